"""Every subcommand has its own --help: exit 0, its own usage line, options with defaults, an
example of itself and the exit-status convention; every option it lists is one the command
accepts (never "unknown option"), so the help cannot drift from the parser."""
import re
import subprocess

import pytest

COMMANDS = ["inspect", "run", "decompose", "benchmark", "predict", "lowerbound", "report", "roofline", "ops", "info",
            "recover"]

# A stand-in value for each kind of option argument the help texts name.
VALUES = {"N": "1", "F": "0.1", "S": "1", "PATH|URL": "{db}", "DIR": "{tmp}/out", "G": "fused", "B": "cpu",
          "FILE": "{tmp}/r.html", "NAME=N": "x=1", "NAME=FILE.npy": "x={tmp}/x.npy", "NODE=NAME": "n=v",
          "SUITE": "s", "wall|cpu": "wall"}


def run(cli, *args):
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def helps(cli):
    return {c: run(cli, c, "--help") for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_the_commands_own(cli, helps, command):
    p = helps[command]
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert text.startswith(f"usage: bricklab {command}"), text[:200]
    assert run(cli, command, "-h").stdout == text
    if command != "recover":
        assert run(cli, "help", command).stdout == text
        assert re.search(rf"Example:\n  bricklab {command} ", text), "no example of the command itself"
        assert "Exit status: 0" in text and "2 on a usage error" in text
    others = [c for c in COMMANDS if c != command]
    assert all(helps[o].stdout != text for o in others), "two commands share one help text"


def listed_options(text):
    """(option, value kind or None) for every option in the help's option lines."""
    out = []
    for line in text.splitlines():
        if not line.startswith("  -"):
            continue
        # Options and their value kinds anywhere on the line ("--warmup N  --min-reps N ...";
        # "-o, --output FILE": the short form takes the long form's value).
        found = list(re.finditer(r"(?:^|\s|,\s|\()(--?[a-z][a-z-]*)(?:\s([A-Z][A-Za-z.=|]*|wall\|cpu))?", line))
        for i, m in enumerate(found):
            kind = m.group(2)
            if kind is None and i + 1 < len(found) and line[m.end():found[i + 1].start() + 2].startswith(","):
                kind = found[i + 1].group(2)
            out.append((m.group(1), kind))
    return out


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "recover"])
def test_every_listed_option_is_accepted(cli, helps, command, tmp_path):
    options = listed_options(helps[command].stdout)
    assert len(options) >= 1
    for flag, kind in options:
        if flag in ("--help", "-h"):
            continue
        args = [flag]
        if kind:
            assert kind in VALUES, f"{command} {flag}: no stand-in value for {kind!r}"
            args.append(VALUES[kind].format(db=tmp_path / "x.sqlite", tmp=tmp_path))
        p = run(cli, command, *args, tmp_path / "missing.onnx")
        assert "unknown option" not in p.stderr, f"bricklab {command} lists {flag} but refuses it: {p.stderr}"


def _completion_options(cli):
    r = run(cli, "completion", "bash")
    assert r.returncode == 0, r.stderr
    return r.stdout, {m.group(1): m.group(2).split() for m in re.finditer(r"^    ([a-z]+)\) opts=\"([^\"]*)\"", r.stdout, re.M)}


def test_bash_completion_completes_commands_and_options(cli):
    script, _ = _completion_options(cli)

    def complete(*words):
        line = " ".join(words)
        code = (f"source /dev/stdin; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _bricklab; "
                "printf '%s\\n' \"${COMPREPLY[@]}\"")
        r = subprocess.run(["bash", "-c", code], input=script, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("bricklab", "low") == ["lowerbound"]
    assert complete("bricklab", "run", "--thr") == ["--threads"]
    assert "--granularity" in complete("bricklab", "decompose", "--")
    assert complete("bricklab", "help", "rep") == ["report"]


def test_completion_offers_every_option_the_help_lists(cli, helps):
    """The completion's options come from each command's --help (whose options the parser accepts:
    test_every_listed_option_is_accepted), so the two cannot drift apart."""
    _, per_command = _completion_options(cli)
    for command in COMMANDS:
        listed = {flag for flag, _ in listed_options(helps[command].stdout)}
        assert listed and listed <= set(per_command[command]), (command, listed - set(per_command[command]))
