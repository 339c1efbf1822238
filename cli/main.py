"""Entry point of the ``fusion`` console command."""

from __future__ import annotations

import typer

from cli import bundle as bundle_cli
from cli import data
from cli import registry as registry_cli
from cli.calibrate import calibrate_cmd
from cli.datatest import datatest_cmd
from cli.demo import demo
from cli.deploy import budget_cmd, degrade_cmd, distill_cmd, export_cmd, firmware_cmd
from cli.help_text import reflow_help
from cli.online import online_cmd
from cli.pretrain import pretrain_cmd
from cli.probe import probe_cmd
from cli.serve import serve_cmd

app = typer.Typer(
    help="fusion: unsupervised multi-sensor fusion, from sensor streams to microcontrollers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(bundle_cli.app, name="bundle")
app.command()(demo)
app.command("pretrain")(pretrain_cmd)
app.command("probe")(probe_cmd)
app.command("datatest")(datatest_cmd)
app.command("distill")(distill_cmd)
app.command("export")(export_cmd)
app.command("degrade")(degrade_cmd)
app.command("budget")(budget_cmd)
app.command("calibrate")(calibrate_cmd)
app.command("serve")(serve_cmd)
app.command("firmware")(firmware_cmd)
app.command("online")(online_cmd)


@app.command()
def version() -> None:
    """Print the toolkit version."""
    from fusion import __version__

    typer.echo(__version__)


reflow_help(app)

if __name__ == "__main__":
    app()
