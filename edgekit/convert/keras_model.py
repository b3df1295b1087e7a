"""Load a Keras model safely, pin its input to batch 1 with static shapes, export it once.

Every converter starts from the one SavedModel exported here (or, for ONNX,
from the loaded model itself): the batch-1 signature keeps SHAPE/STRIDED_SLICE/PACK
ops out of the TFLite graph (a free batch size adds them: LeNet with TF 2.21;
tests/test_convert.py checks the op list).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.errors import ConversionError, InvalidModel, UsageError, first_line

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and absl logging off the console (set before it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_modules(modules: Sequence[str]) -> None:
    """Import the user's modules that register custom layers or subclassed models."""
    for name in modules:
        path = Path(name)
        try:
            if path.suffix == ".py":
                if not path.is_file():
                    raise UsageError(f"import {name}: no such file", param="import")
                spec = importlib.util.spec_from_file_location(path.stem, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"import {name}: importing it failed: {exc}", param="import") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InvalidModel(f"{path}: no such file")
    if path.is_dir():
        raise InvalidModel(f"{path} is a folder; give the .keras file of a Keras model")
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise InvalidModel(f"{path.name} is not a Keras model file (.keras or .h5); "
                           "save the model with model.save('model.keras')")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise InvalidModel(f"{path.name} is not a valid .keras file (a .keras file is a zip "
                           "archive; this one is damaged or something else renamed)")


def load_keras_model(path: str | Path, *, trust: bool = False) -> Any:
    """Load with Keras safe mode on (unless ``trust``); InvalidModel with the reason on failure."""
    path = Path(path)
    _check_file(path)
    quiet_tensorflow()
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:
        raise _explain_load_error(path, exc) from exc


def _explain_load_error(path: Path, exc: Exception) -> InvalidModel:
    text = str(exc)
    if "safe_mode" in text or "Lambda" in text and "unsafe" in text.lower():
        return InvalidModel(
            f"{path.name} contains a Lambda layer (arbitrary Python code), which Keras will "
            "not load in safe mode. Replace it with a custom layer registered with "
            "@keras.saving.register_keras_serializable, or, only if you made the file "
            "yourself, pass --load trust_model=on"
        )
    if "Could not locate class" in text or "Unknown layer" in text or "custom_objects" in text:
        return InvalidModel(
            f"{path.name} uses custom classes that are not registered here: pass "
            "--load import=your_module.py (the file that defines them, decorated with "
            "@keras.saving.register_keras_serializable)"
        )
    first = first_line(exc, 200)
    if isinstance(exc, (zipfile.BadZipFile, EOFError)) or "zip" in text.lower():
        return InvalidModel(f"{path.name} is damaged (its archive cannot be read); save the "
                            "model again")
    if "synchronously open" in text or "HDF5" in text or "h5py" in text or ".h5" in text:
        return InvalidModel(f"{path.name} is damaged: its weights cannot be read ({first}); "
                            "save the model again")
    return InvalidModel(f"{path.name}: Keras cannot load it ({first}); save the model again "
                        "with model.save('model.keras') in Keras 3")


def input_shape(model: Any, override: Sequence[int] | None = None) -> tuple[int, ...]:
    """The (H, W, C) of the model's one input, made static; UsageError when it cannot be."""
    shape = _declared_shape(model)
    if shape is None:
        if not override:
            raise UsageError(
                f"cannot tell the input shape of {model.__class__.__name__} (a subclassed model "
                "that was never built?): give it with `input_shape` H,W,C"
            )
        return tuple(int(d) for d in override)
    dims = tuple(shape[1:])
    if override:
        override = tuple(int(d) for d in override)
        if len(override) != len(dims) or any(d is not None and d != o
                                             for d, o in zip(dims, override)):
            raise UsageError(f"input_shape {','.join(map(str, override))} does not fit the "
                             f"model's input {tuple(shape)}", param="input_shape")
        return override
    if any(d is None for d in dims):
        raise UsageError(
            f"the model's input has unknown dimensions {tuple(shape)}; edge formats need static "
            "shapes: give them with `input_shape` H,W,C (e.g. `input_shape` 224,224,3)"
        )
    return tuple(int(d) for d in dims)


def _declared_shape(model: Any) -> tuple | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs:
        if len(inputs) != 1:
            raise ConversionError(f"the model has {len(inputs)} inputs; edgekit converts "
                                  "single-input image models")
        return tuple(inputs[0].shape)
    config = model.get_build_config() if hasattr(model, "get_build_config") else None
    shape = (config or {}).get("input_shape")
    if shape and isinstance(shape[0], (list, tuple)):
        raise ConversionError("the model has several inputs; edgekit converts single-input "
                              "image models")
    return tuple(shape) if shape else None


def input_name(model: Any) -> str:
    try:
        name = model.inputs[0].name
    except (AttributeError, ValueError, IndexError, TypeError):
        return "input"
    return name.split(":")[0] or "input"


def export_saved_model(model: Any, shape: tuple[int, ...], folder: Path) -> None:
    """Write a SavedModel whose serving signature takes exactly one (1, *shape) float32 tensor."""
    import tensorflow as tf

    spec = tf.TensorSpec((1, *shape), tf.float32, name=input_name(model))
    try:
        model.export(str(folder), format="tf_saved_model", input_signature=[spec], verbose=False)
    except Exception as exc:
        raise ConversionError("exporting the Keras model as a SavedModel failed: "
                              f"{first_line(exc, 300)}") from exc
