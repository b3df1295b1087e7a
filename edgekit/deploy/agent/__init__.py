"""edgekit's device agent: the device side of ``edgekit deploy``.

The workstation never copies these modules: each step runs ``python3 - COMMAND 'JSON'`` over
ssh with their sources on stdin (``edgekit.deploy.shipping`` bundles them into one script that
loads them from memory) and reads one JSON object back from stdout. ``main`` answers the
commands; the other modules are the commands and the helpers they share. Standard library only,
relative imports only, Python 3.7+ (so that a device with an old Python still gets a clear
answer). Layout it keeps under BASE (default ``~/edgekit``)::

    releases/20250101T120000Z-1a2b3c4d/   one folder per deploy, read-only files once checked
        bundle/  edgekit.json  validation.npz  the artifacts for this target
        wheels/  edgekit-*.whl  (+ the runtime's wheels with --offline)
        venv ->  ../../venvs/<key>
        release.json                      written last: what was checked (a complete release)
    releases/.incoming-<id>/              a deploy in progress; never used, removed when stale
    venvs/<key>/                          one per requirement set + edgekit wheel, shared
    current -> releases/<id>              switched with one rename(2)
    lock                                  flock(2)ed by the deploy or rollback under way
    service.env                           the unit's environment: the live view's token (0600)

One deploy or rollback at a time: ``hold`` takes the lock and keeps it for as long as the
workstation's ssh session to it lives (and sends a heartbeat on stdin); every step that
changes something checks that its deploy still holds it. The kernel releases a flock when
its holder dies, so a lock left by a dead process is simply taken over.
"""
