"""The measuring core: quality metrics, libvmaf, BD-rate, clip I/O and the encode-restore-measure runner.

Used at run time (``vsr-transcode --report``, the probes of ``--resolution auto``) and by the benchmarks."""
