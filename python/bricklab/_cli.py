"""Entry point of the `bricklab` console script: runs the C++ CLI shipped inside the package.

``bricklab lowerbound|report MODEL ... --peers`` is handled here first: the peer runtimes (ONNX
Runtime, OpenVINO, PyTorch) are Python packages, so they are measured from Python with the
command's model, database and runner options (stored in the database under the same machine
fingerprint), and then the C++ command runs without ``--peers`` and shows them beside bricklab.
"""
import os
import sys

# Options of the lowerbound family that take a value (the C++ parser's, src/cli/bricks_cmds.cpp).
_VALUE_OPTIONS = {"--batch", "--granularity", "--threads", "--tolerance", "--budget", "--warmup", "--min-reps",
                  "--max-reps", "--clock", "--db", "--queue", "--backend", "-o", "--output", "--emit"}
# CLI flag -> (runner option, value): the runner settings that make up the machine fingerprint.
_RUNNER_FLAGS = {"--pin": ("pin", True), "--cold-weights": ("cold_weights", True), "--hot-weights": ("evict_weights", False),
                 "--evict-outputs": ("evict_outputs", True), "--no-fusion": ("fusion", False),
                 "--per-brick-tolerance": ("per_model_tolerance", False)}
_RUNNER_VALUES = {"--threads": ("threads", int), "--tolerance": ("tolerance", float), "--budget": ("budget_s", float),
                  "--warmup": ("warmup", int), "--min-reps": ("min_reps", int), "--max-reps": ("max_reps", int),
                  "--clock": ("clock", str), "--backend": ("backend", str)}


def _exe() -> str:
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "bricklab")
    if not os.access(exe, os.X_OK):
        sys.stderr.write(f"bricklab: error: the command-line tool is missing from the package ({exe}); reinstall bricklab\n")
        sys.exit(1)
    return exe


def _measure_peers(command: str, args: list) -> None:
    """Measures the peers for `bricklab COMMAND args` (args without --peers); exits on errors."""
    models, runner, db, batch = [], {"threads": 1}, None, None
    i = 0
    while i < len(args):
        a = args[i]
        if a in _VALUE_OPTIONS:
            if i + 1 >= len(args):
                return  # the C++ parser reports the missing value
            value = args[i + 1]
            if a == "--db":
                db = value
            elif a == "--batch":
                batch = value
            elif a in _RUNNER_VALUES:
                key, kind = _RUNNER_VALUES[a]
                runner[key] = value if kind is str else kind(value) if _parses(kind, value) else value
            i += 2
            continue
        if a in _RUNNER_FLAGS:
            key, value = _RUNNER_FLAGS[a]
            runner[key] = value
        elif not a.startswith("-"):
            models.append(a)
        i += 1
    if len(models) != 1 or batch is not None and not batch.isdigit() or not all(
            not isinstance(v, str) or k in ("clock", "backend") for k, v in runner.items()):
        return  # a usage error: the C++ parser says which
    if runner.get("backend", "cpu") != "cpu":
        sys.stderr.write(f"bricklab {command}: note: peers are measured on the CPU only; --peers ignored with --backend "
                         f"{runner['backend']}\n")
        return
    try:
        from . import lowerbound
        from ._core import Error

        sys.stderr.write(f"bricklab {command}: measuring the peer runtimes (ONNX Runtime, OpenVINO, PyTorch), "
                         f"{runner['threads']} thread(s)\n")
        got = lowerbound.measure_peers(models[0], db=db, batch=int(batch) if batch else None, progress=True, **runner)
    except (Error, OSError, ValueError, TypeError) as e:
        sys.stderr.write(f"bricklab {command}: error: {e}\n")
        sys.exit(1)
    for runtime, result in got.items():
        shown = f"{result:.3f} ms" if isinstance(result, (int, float)) else result
        sys.stderr.write(f"  {runtime:<12} {shown}\n")


def _parses(kind, value: str) -> bool:
    try:
        kind(value)
        return True
    except ValueError:
        return False


def main() -> None:
    exe = _exe()
    args = sys.argv[1:]
    if args and args[0] in ("lowerbound", "report") and "--peers" in args[1:] and not {"-h", "--help"} & set(args):
        rest = [a for a in args[1:] if a != "--peers"]
        _measure_peers(args[0], rest)
        args = [args[0]] + rest
    os.execv(exe, [exe] + args)


if __name__ == "__main__":
    main()
