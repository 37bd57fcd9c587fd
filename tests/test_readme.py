"""README.md's commands are the ones CI and users run."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _block_after(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    command = _block_after(readme, "## Run the tests")
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_quickstart_runs_the_pipeline_on_default_params() -> None:
    command = _block_after((REPO / "README.md").read_text(), "## Quick start")
    assert "yolox pipeline --params params/default.yaml" in command
    assert (REPO / "params" / "default.yaml").is_file()
