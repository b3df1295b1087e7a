"""The bundle: one model in every format, and the one manifest (``edgekit.json``) that says how
to run it. The manifest, the artifacts' integrity, the table of formats, the ``.tflite`` readers,
tensors and quantisation, what a bundle or a model file holds (``contents``), and the checks of
a bundle against its own validation set (``fidelity``, ``verify``).

A bundle is opened once: ``read_manifest(folder)`` gives its ``Manifest``, which knows its
folder (``bundle_folder``); pass that on rather than the folder (``load_model``, ``loop_model``
and ``check_files`` take it), so one command reads ``edgekit.json`` once.
"""
