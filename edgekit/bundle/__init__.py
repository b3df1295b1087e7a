"""The bundle: one model in every format, and the one manifest (``edgekit.json``) that says how
to run it. The manifest, the artifacts' integrity, the table of formats, the ``.tflite`` readers,
tensors and quantisation, what a bundle or a model file holds (``contents``), and the checks of
a bundle against its own validation set (``fidelity``, ``verify``).
"""
