"""CPU emulation of the CUDA kernels in kernels/*.cu (see cuda_shim.h and emulator.py)."""
