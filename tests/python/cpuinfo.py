"""What the test machine's CPU has: oneDNN offers some kernels (Winograd, bfloat16, 16-channel
blocked layouts) only with AVX-512, so tests of those paths check them where they exist."""


def cpu_has(flag):
    """True when /proc/cpuinfo lists `flag` (e.g. "avx512f")."""
    try:
        with open("/proc/cpuinfo") as f:
            return flag in f.read().split()
    except OSError:
        return False
