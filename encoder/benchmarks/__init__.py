"""vsr-bench: image SR, rate-distortion, speed and make-clip, with their reports and plots."""
