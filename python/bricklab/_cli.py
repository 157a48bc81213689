"""Entry point of the `bricklab` console script: runs the C++ CLI shipped inside the package."""
import os
import sys


def main() -> None:
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "bricklab")
    if not os.access(exe, os.X_OK):
        sys.stderr.write(f"bricklab: error: the command-line tool is missing from the package ({exe}); reinstall bricklab\n")
        sys.exit(1)
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    main()
