"""DVC stages `eval_base`, `eval` and `dev`: generate, execute in the sandbox, write pass@k.

One script, three stages: `--section eval` scores the test benchmarks, `--section dev` the
external dev set that decides evol-stop; `--role base` scores the base model (prompted
with `generate.base_mode`) so a pipeline run reports base -> fine-tuned side by side.
The work is `evolcoder.eval.run.evaluate_model`, the same call the CLI makes.
"""

from __future__ import annotations

import click
from _common import stage_main

from evolcoder.config import Params


@click.command()
@click.option("--params", default="params.yaml", show_default=True, help="Params file.")
@click.option("--section", type=click.Choice(["eval", "dev"]), required=True,
              help="Params section listing the benchmarks (`eval`: test sets, `dev`: the dev set).")
@click.option("--role", type=click.Choice(["finetuned", "base"]), default="finetuned", show_default=True,
              help="`base` prompts with generate.base_mode instead of generate.mode.")
@click.option("--model", required=True, help="Model directory to evaluate (or the name at generate.base_url).")
@click.option("--base-model", default=None, help="The base model directory, recorded in the metrics.")
@click.option("--out-dir", required=True, help="Directory for samples and execution results.")
@click.option("--metrics", required=True, help="Metrics JSON to write (pass@k + provenance).")
@stage_main
def main(params: str, section: str, role: str, model: str, base_model: str | None, out_dir: str,
         metrics: str) -> None:
    from evolcoder.eval.run import evaluate_model

    every = Params.load(params)  # the whole file, validated once
    evaluate_model(model, every.generate, getattr(every, section), sandbox=every.sandbox,
                   llm=every.llm_config(),  # cache location and retry policy only
                   role=role, section=section, base_model=base_model, out_dir=out_dir, metrics_path=metrics,
                   log=lambda line: click.echo(line, err=True))


if __name__ == "__main__":
    main()
