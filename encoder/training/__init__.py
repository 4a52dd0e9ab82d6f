"""vsr-train: the training loop, its tasks (sr, joint), codec proxies, the rate proxy and the data."""
