"""README.md and docs/*.md: every `segcli` command in their code blocks names a real command and only
options that command has, and every relative link points at a file of the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from segcli.cli.main import cli as main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"", "bash", "sh", "console"}


def shell_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks in a shell language (or none named)."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                if language in SHELL:
                    blocks.append("\n".join(lines))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def commands(text: str) -> list[str]:
    """The `segcli ...` invocations in a page's fenced code blocks (after a pipe too), comments cut."""
    found = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
            lexer.whitespace_split, lexer.commenters = True, "#"
            words: list[str] = []
            for word in [*lexer, "|"]:
                if word.strip(";&|<>"):
                    words.append(word)
                    continue
                if words and words[0] == "segcli":
                    found.append(shlex.join(words[1:]))
                words = []
    return found


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command the words name, and the words left for it."""
    command: click.Command = main
    ctx = click.Context(main, info_name="segcli")
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"no command {words[0]!r} in {command.name}"
        command, words = sub, words[1:]
    return command, words


def option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts + param.secondary_opts)
    return names


def documented() -> list[tuple[str, str]]:
    return [(page.relative_to(ROOT).as_posix(), line) for page in DOCS for line in commands(page.read_text())]


def test_the_readme_shows_the_commands_it_promises():
    shown = {shlex.split(line)[0] for page, line in documented() if page == "README.md"}
    assert set(main.list_commands(click.Context(main))) <= shown


@pytest.mark.parametrize(("page", "line"), documented())
def test_documented_command_uses_only_options_it_has(page, line):
    command, words = resolve(shlex.split(line))
    given = {word.split("=", 1)[0] for word in words if word.startswith("--")}
    unknown = given - option_names(command)
    assert not unknown, f"{page}: `segcli {line}`: {sorted(unknown)} not in `segcli {command.name} --help`"


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_relative_links_point_at_files(page):
    text = page.read_text()
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target and not (page.parent / target).exists():
            missing.append(target)
    assert not missing, f"{page.name}: links to {missing}"


def _render_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_tables_are_what_their_json_records_give():
    render = _render_module()
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    sources = [match.group("source") for match in render.BLOCK.finditer(text)]
    assert sources and all((ROOT / source).is_file() for source in sources)
    assert render.rewrite(text) == text, "docs/BENCHMARKS.md is out of date: run python benchmarks/render.py"


def test_a_rendered_ratio_is_the_recorded_means_ratio(tmp_path):
    """Independent of render.py's formatting code: the engine row's ratio is mean / the bare row's mean."""
    import json

    record = json.loads((ROOT / "benchmarks" / "cpu-1thread.json").read_text())
    rows = {(row["model"], row["size"], row["precision"], row["channels_last"]): row for row in record["rows"]}
    bare = rows[("fcn8s", "512x512", "fp32", False)]["mean_ms"]
    fast = rows[("fcn8s", "512x512", "bf16", True)]["mean_ms"]
    text = _render_module().render("benchmarks/cpu-1thread.json")
    line = next(line for line in text.splitlines() if line.startswith("| fcn8s |") and "512x512 | bf16 CL" in line)
    assert line.endswith(f"| {fast / bare:.2f}x |")


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """README's Python block, run as written on a sample scene saved as img.jpg (shipped weights, CPU)."""
    import shutil
    import warnings

    import numpy as np

    import segcli

    if not hasattr(segcli, "load"):
        pytest.skip("segcli.load is not part of this version of the package")
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Python"):].split("```python\n", 1)[1].split("```", 1)[0]
    sample = sorted((ROOT / "samples" / "synth" / "JPEGImages").glob("*.jpg"))[0]
    shutil.copyfile(sample, tmp_path / "img.jpg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped checkpoint's synthetic-scenes warning
        exec(compile(block, "README.md", "exec"), namespace)
    labels = namespace["prediction"].labels
    assert labels.shape == np.asarray(__import__("PIL.Image").Image.open(sample)).shape[:2]


def test_the_readme_speed_figures_are_the_records_it_names():
    """README's "CPU and GPU" figures, recomputed from the JSON named next to each."""
    import json

    readme = (ROOT / "README.md").read_text()
    section = " ".join(readme[readme.index("## CPU and GPU"):readme.index("## Read more")].split())

    def load(name: str) -> dict:
        assert f"`benchmarks/{name}`" in section
        return json.loads((ROOT / "benchmarks" / name).read_text())

    cpu = [row["time_vs_baseline"] for row in load("cpu-1thread.json")["rows"]
           if row["size"] == "512x512" and row["precision"] == "bf16" and row["channels_last"]]
    assert f"{min(cpu):.2f}-{max(cpu):.2f}x the time" in section
    gpu = load("gpu-h200.json")["rows"]
    bare = [row["mean_ms"] for row in gpu if row["size"] == "512x512" and row["variant"] == "baseline"]
    fast = [row["time_vs_baseline"] for row in gpu if row["size"] == "512x512" and row["precision"] == "bf16"]
    assert f"{min(bare):.1f}-{max(bare):.1f} ms per image" in section
    assert f"took {min(fast):.1f}-{max(fast):.1f}x that time" in section
    case = load("crf_speed.json")["cases"]["9 classes: shipped deeplabv3p"]
    assert f"{case['ratio_cpu']:.2f}x the CPU time, {100 * case['pixels_equal']:.1f}% of pixels equal" in section
