"""Calibration and validation data: loaded from arrays or image folders (``datasets``) and
checked before a conversion uses them (``datacheck``)."""
