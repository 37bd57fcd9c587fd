"""README.md's commands are the ones CI and users run."""

from helpers.project_files import REPO


def _block_after(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (REPO / "README.md").read_text()
    command = _block_after(readme, "## Run the tests")
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_quickstarts_run_the_pipeline_on_their_params() -> None:
    readme = (REPO / "README.md").read_text()
    own = _block_after(readme, "## Quick start: your own classes")
    assert "yolox pipeline --params params/raccoon.yaml" in own and "pip install" in own
    assert "yolox pipeline --params params/default.yaml" in _block_after(readme, "## Quick start: retraining")
    assert (REPO / "params" / "raccoon.yaml").is_file() and (REPO / "params" / "default.yaml").is_file()
    assert "@@" not in readme          # every figure filled in from a measured run


def test_scaling_out_commands_and_params_are_valid() -> None:
    """Every ``--set`` of the "Scaling out" section and its params block parse against yolox/config.py."""
    import re

    import yaml

    from yolox.config import PipelineParams, apply_override, parse_params

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.DOTALL)
    joined = " ".join(c.replace("\\\n", " ") for c in commands)
    overrides = re.findall(r"--set (\S+)", joined)
    assert any(o.startswith("train.distributed.launcher=torchrun") for o in overrides)
    for command in (line for c in commands for line in c.replace("\\\n", " ").splitlines()):
        raw: dict = {}
        for item in re.findall(r"--set (\S+)", command):
            apply_override(raw, item.replace("$MY_ADDR", "10.0.0.2"))
        parse_params(raw, "README Scaling out")
    (block,) = re.findall(r"```yaml\n(.*?)\n```", section, re.DOTALL)
    params = parse_params(yaml.safe_load(block), "README Scaling out yaml")
    assert params.train.distributed.launcher == "kubernetes" and params.train.distributed.nodes == 4
    assert isinstance(params, PipelineParams)
