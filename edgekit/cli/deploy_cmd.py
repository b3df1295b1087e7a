"""``edgekit targets``, ``edgekit verify`` and ``edgekit deploy``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli import options
from edgekit.cli.app import cli, debug_option, progress_printer
from edgekit.cli.options import Finite
from edgekit.errors import DeployError, EdgekitError, UsageError
from edgekit.helpers.limits import MAX_SECONDS


@cli.command()
@options.table_output
@options.quiet
@debug_option
def targets(view: str, quiet: bool) -> None:
    """List the device profiles that edgekit deploy --target takes.

    \b
    Built-in profiles live in the repository's targets/ folder (inside the
    package once installed); your own go in ~/.config/edgekit/targets/NAME.toml
    (a file there replaces a built-in one of the same name), or pass a file
    directly: edgekit deploy ... --target ./my-device.toml
    """
    from edgekit.deploy.targets import list_targets, user_dir
    from edgekit.helpers.render import render_table

    found = list_targets()
    if view == "json":
        click.echo(json.dumps([t.to_dict() for t in found], indent=2))
        return
    def where(t) -> str:  # built-in, or the user's own file
        if t.origin == "built-in" or t.path is None:
            return t.origin or "-"
        return str(t.path).replace(str(Path.home()), "~", 1)

    rows = [[t.name, t.description, t.arch, f"{t.python}", t.tflite_runtime.split(" (")[0],
             ", ".join(t.formats), t.backend + (f" ({t.device})" if t.device else ""),
             where(t)] for t in found]
    click.echo(render_table(["target", "device", "arch", "python", "tflite runtime", "formats",
                             "backend", "from"], rows, view))
    if view == "text" and not quiet:
        click.echo(f"\nyour own profiles: {user_dir()}/NAME.toml; details: edgekit targets "
                   "--json")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@options.backend
@options.device
@options.threads
@options.fmt
@options.samples
@click.option("--allow-empty", is_flag=True,
              help="Pass a bundle without validation samples after one inference on zeros "
                   "(without it there is nothing to compare, and verify exits 1).")
@options.json_output
@options.quiet
@debug_option
def verify(bundle: Path, backend: str | None, device: str | None, threads: int | None,
           fmt: str | None, samples: int, allow_empty: bool, view: str, quiet: bool) -> None:
    """Check a bundle where it lies: file hashes, then a few validation samples.

    \b
    Every artifact file is checked against the sha256 and size in the
    manifest; if all match, SAMPLES samples of the bundle's validation set run
    through the backend and are compared with the Keras model's outputs
    (top-1 agreement for class-score outputs, and accuracy when labels are
    known). Exit code 1 when a file does not match, when an output holds NaN
    or inf, or when the bundle has no validation samples to compare (unless
    --allow-empty). edgekit deploy runs this on the device as its smoke test.

    \b
    Example:
      edgekit verify ~/edgekit/current/bundle --backend tflite --samples 20
    """
    from edgekit.bundle.verify import summary, verify_bundle

    report = verify_bundle(bundle, backend=backend, device=device, fmt=fmt, samples=samples,
                           threads=threads)
    click.echo(json.dumps(report.to_dict(), indent=2) if view == "json" else summary(report))
    problem = report.problem()
    if problem:
        raise EdgekitError(problem)
    if not report.validation and not allow_empty:
        raise EdgekitError(f"nothing to compare: {bundle} has no validation samples (convert "
                           "with --val to keep some); pass --allow-empty to accept a check "
                           "that the artifact only runs")


@cli.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--host", "host_text", metavar="USER@HOST",
              help="The device, as ssh reaches it (e.g. pi@raspberrypi.local).")
@click.option("--inventory", type=click.Path(path_type=Path), metavar="INVENTORY",
              help="Every host of this Ansible inventory (INI or YAML) instead of --host, "
              "through ansible-core (pip install 'edgekit[fleet]'); a host's or group's "
              "edgekit_target variable picks its target (--target: the rest).")
@click.option("--limit", metavar="PATTERN", help="With --inventory: only the hosts this "
              "Ansible pattern matches (a host, a group, 'lab:!pi3', 'pi*').")
@click.option("--serial", metavar="N|N%", help="With --inventory: hosts per batch (Ansible's "
              "serial); the first batch is the canary.")
@click.option("--max-fail-percentage", type=Finite(0, 100), metavar="P", help="With "
              "--inventory: stop the rollout when more than P% of a batch fails (0: any "
              "failure).")
@click.option("--forks", default=5, show_default=True, metavar="N",
              help="With --inventory: hosts deployed at the same time (Ansible's forks).")
@click.option("--emit-playbook", type=click.Path(path_type=Path), metavar="DIR",
              help="With --inventory or --target: write a self-contained Ansible playbook "
              "and role (the agent and the files included, with a README) to DIR for "
              "ansible-playbook, AWX or CI; send nothing.")
@click.option("--target", "target_name", metavar="NAME|FILE",
              help="Device profile: a name from `edgekit targets`, or a .toml file.")
@click.option("--port", type=click.IntRange(1, 65535), metavar="PORT",
              show_default="22, or your ~/.ssh/config", help="SSH port.")
@click.option("--identity", type=click.Path(path_type=Path), metavar="KEYFILE",
              show_default="ssh's own keys and agent", help="Private key to log in with.")
@click.option("--known-hosts", type=click.Path(path_type=Path), metavar="FILE",
              show_default="ssh's own", help="The only known_hosts file to trust.")
@click.option("--service", is_flag=True, help="Install a systemd user unit that runs "
              "`edgekit run` on the current release at boot, restarting on failure; it must "
              "stay up for --settle seconds, or current switches back.")
@click.option("--offline", is_flag=True, help="Download the target's wheels here and ship "
              "them, for a device without internet.")
@click.option("--dry-run", is_flag=True, help="Print every step and command; change nothing "
              "(the device is only asked, read-only, what it already holds).")
@click.option("--rollback", is_flag=True, help="Switch back to the release before the "
              "current one (checked first).")
@click.option("--to", "to_release", metavar="RELEASE", help="With --rollback: this release.")
@click.option("--status", "show_status", is_flag=True,
              help="Show the device's releases, environments, service (running or not, "
              "since when, restarts, lingering) and who holds its lock.")
@click.option("--python", default="python3", show_default=True, metavar="PATH",
              help="The device's Python that makes the environment.")
@click.option("--remote-dir", default="edgekit", show_default=True, metavar="DIR",
              help="Where releases live on the device (relative: to the login home).")
@options.samples
@click.option("--keep", default=3, show_default=True, type=click.IntRange(min=1), metavar="N",
              help="Complete releases kept.")
@click.option("--timeout", default=60.0, show_default=True,
              type=Finite(3, MAX_SECONDS), metavar="SECONDS",
              help="How long a silent link is tolerated before giving up.")
@click.option("--settle", default=10.0, show_default=True, type=Finite(0, MAX_SECONDS),
              metavar="SECONDS",
              help="How long a (re)started service must stay up (no restart) to count as "
              "healthy; if it does not, current switches back to the previous release.")
@click.option("--lock-timeout", default=0.0, show_default=True, type=Finite(0, MAX_SECONDS),
              metavar="SECONDS",
              help="How long to wait while another deploy or rollback holds the device's "
              "lock (0: refuse at once, naming the holder).")
@click.option("--wheel", type=click.Path(path_type=Path), metavar="FILE",
              help="Ship this edgekit wheel instead of building one from the checkout.")
@options.json_output
@options.quiet
@debug_option
def deploy(bundle: Path | None, host_text: str | None, inventory: Path | None,
           limit: str | None, serial: str | None, max_fail_percentage: float | None,
           forks: int, emit_playbook: Path | None, target_name: str | None, port: int | None,
           identity: Path | None, known_hosts: Path | None, service: bool, offline: bool,
           dry_run: bool, rollback: bool, to_release: str | None, show_status: bool,
           python: str, remote_dir: str, samples: int, keep: int, timeout: float,
           settle: float, lock_timeout: float, wheel: Path | None, view: str,
           quiet: bool) -> None:
    """Deploy a bundle to a device over SSH, atomically, and prove it runs there.

    \b
    Ships the artifacts the target runs (and the manifest, the validation set
    and edgekit as a wheel) into a new release folder on the device, checks
    every file's sha256 there, sets up (or reuses) a Python environment with
    the target's runtime, runs a smoke test with it, and only then switches
    ~/edgekit/current to the new release. The previous release stays for
    --rollback. Keys only (BatchMode), host keys always checked.

    \b
    A service (--service, or one installed earlier) is restarted and watched
    for --settle seconds; when it does not stay up, current switches back to
    the previous release, and the report shows the failing release's journal
    (exit 1). One deploy or rollback at a time per device: a lock on the
    device, held from the first step to the last.

    \b
    A target with the live view (serve = "0.0.0.0:8080", the camera targets):
    with --service the device makes the view's token into ~/edgekit/service.env
    (mode 0600, read by the unit), and the report shows the URL with it once,
    for each host with --inventory; --status shows the URL.

    \b
    Many devices: --inventory runs the same steps on every host of an Ansible
    inventory through ansible-playbook (the plan is made once per target),
    --serial 1 --max-fail-percentage 0 makes the first host a canary, and a
    table says what happened on each host (exit 1 if any failed).

    \b
    Examples:
      edgekit deploy out/lenet5 --target rpi4-cpu --host pi@raspberrypi.local
      edgekit deploy out/lenet5 --target rpi4-cpu --host pi@10.0.0.7 --service --offline
      edgekit deploy --status --host pi@raspberrypi.local
      edgekit deploy --rollback --host pi@raspberrypi.local
      edgekit deploy out/lenet5 --inventory lab.ini --serial 1 --max-fail-percentage 0
      edgekit deploy --status --inventory lab.ini --limit pis
    """
    from edgekit.deploy import DeployRequest, SshOptions, parse_host
    from edgekit.deploy import deploy as run_deploy
    from edgekit.deploy import rollback as run_rollback
    from edgekit.deploy import status as run_status
    from edgekit.deploy.report import deploy_text, rollback_text, status_text

    if inventory is not None or emit_playbook is not None:
        from edgekit.cli.fleet_cmd import fleet

        fleet(**{k: v for k, v in locals().items() if k != "fleet"})
        return
    fleet_only = [name for name, value in (("--limit", limit), ("--serial", serial),
                                           ("--max-fail-percentage", max_fail_percentage))
                  if value is not None]
    if fleet_only:
        raise UsageError(f"{', '.join(fleet_only)} go with --inventory")
    if host_text is None:
        raise UsageError("deploy needs --host USER@HOST (one device) or --inventory FILE "
                         "(every host of an Ansible inventory)")
    if rollback and show_status:
        raise UsageError("choose one of --rollback and --status")
    if to_release and not rollback:
        raise UsageError("--to goes with --rollback")
    if rollback or show_status:
        mode = "--rollback" if rollback else "--status"
        given = [name for name, value in (("BUNDLE", bundle), ("--target", target_name),
                                          ("--service", service), ("--offline", offline))
                 if value]
        if given:
            raise UsageError(f"{mode} takes no {', '.join(given)}: it works on the releases "
                             "already on the device")
    elif bundle is None or target_name is None:
        raise UsageError("deploy needs a BUNDLE and --target NAME (see edgekit targets), "
                         "or one of --status and --rollback")
    if show_status and dry_run:
        raise UsageError("--status only reads the device; --dry-run is for deploy and rollback")
    host = parse_host(host_text, port)
    ssh = SshOptions(identity, known_hosts, timeout)
    progress = progress_printer(not quiet)
    if show_status:
        state = run_status(host, ssh, python=python, base=remote_dir)
        click.echo(json.dumps(state, indent=2) if view == "json"
                   else status_text(host.label, state))
        return
    if rollback:
        done = run_rollback(host, ssh, to=to_release, python=python, base=remote_dir,
                            dry_run=dry_run, settle=settle, lock_timeout=lock_timeout,
                            progress=progress)
        click.echo(json.dumps(done.to_dict(), indent=2) if view == "json" else rollback_text(done))
    else:
        from edgekit.deploy.targets import find_target

        request = DeployRequest(bundle, find_target(target_name), host, ssh, python,
                                remote_dir, service, offline, dry_run, samples, keep, wheel,
                                settle, lock_timeout)
        done = run_deploy(request, progress)
        click.echo(json.dumps(done.to_dict(), indent=2) if view == "json" else deploy_text(done))
    if done.problem:  # after the report: it holds the journal lines the error points to
        raise DeployError(done.problem)
