"""Quantise a Keras model for the IMX500 with Sony's MCT, inside the IMX500 environment.

Run by ``edgekit.convert.imx500`` as ``.venv-imx500/bin/python imx500_worker.py REQUEST.json``:
that environment holds TensorFlow 2.15 and Keras 2 (what model-compression-toolkit and
imx500-converter pin), so this file imports nothing of edgekit's and answers with one JSON line
on stdout (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``).

The Keras 3 model arrives as its config (``model.json``) and its weights per layer
(``weights.npz``, ``LAYER/INDEX``); it is rebuilt here layer by layer with Keras 2's own classes
(the config dialects differ: dtype policies, ``batch_shape``, the call arguments of a
functional model's nodes) and its weights set by layer name. The float model's outputs on the
validation set come back too, so edgekit can check the rebuild before trusting the rest.

Modes: ``ptq`` (post-training quantisation with the IMX500 target platform), ``gptq``
(gradient-based refinement of the weights, slower, for a model that PTQ leaves short of the
agreement bar), ``mixed`` (mixed precision: weights of 8, 4 or 2 bits chosen to fit
``weights_bytes``, for a model whose 8-bit weights do not fit the sensor's memory).
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Keyword arguments every Keras 2 layer takes besides those of its own constructor.
_BASE_KWARGS = {"name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
                "input_dim", "autocast"}
_INITIALIZER_KEYS = ("initializer", "regularizer", "constraint")


def _plain(value: Any) -> Any:
    """A Keras 3 config value in Keras 2's dialect: dtype policies as their name, initializers
    and the like without Keras 3's extra arguments."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return value.get("config", {}).get("name", "float32")
        if str(value.get("module", "")).startswith("keras.initializers"):
            return {"class_name": value["class_name"], "config": {}}
        return {k: _plain(v) for k, v in value.items()
                if k not in ("module", "registered_name", "build_config", "compile_config")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _layer(tf: Any, entry: dict[str, Any]) -> Any:
    """One Keras 2 layer from a Keras 3 layer entry, with the arguments Keras 2 takes."""
    class_name = entry["class_name"]
    config = _plain(entry["config"])
    if class_name == "InputLayer":
        shape = config.pop("batch_shape", None) or config.pop("batch_input_shape")
        return tf.keras.Input(batch_shape=shape, name=config["name"], dtype=config.get("dtype"))
    cls = getattr(tf.keras.layers, class_name, None)
    if cls is None:
        raise ValueError(f"layer {config.get('name')!r}: Keras 2 has no layer {class_name} "
                         "(a custom or Keras 3-only layer cannot cross to the IMX500 toolchain)")
    accepted = set(inspect.signature(cls.__init__).parameters) | _BASE_KWARGS
    for key in list(config):
        if any(key.endswith(k) for k in _INITIALIZER_KEYS) and config[key] is None:
            continue
        if key not in accepted:
            config.pop(key)
    return cls.from_config(config)


def _history(args: Any) -> list[list[Any]]:
    """The (layer, node, tensor) of every Keras tensor in a Keras 3 node's call arguments."""
    found: list[list[Any]] = []
    if isinstance(args, dict):
        if args.get("class_name") == "__keras_tensor__":
            found.append(list(args["config"]["keras_history"]))
        else:
            for v in args.values():
                found.extend(_history(v))
    elif isinstance(args, list):
        for v in args:
            found.extend(_history(v))
    return found


def rebuild(tf: Any, config: dict[str, Any], weights: dict[str, Any]) -> Any:
    """The Keras 2 model of a Keras 3 Sequential or Functional config, with its weights."""
    layers = config["config"]["layers"]
    built: dict[str, Any] = {}
    if config["class_name"] == "Sequential":
        first = layers[0]
        if first["class_name"] != "InputLayer":
            raise ValueError("a Sequential model without an Input layer: give it keras.Input")
        x = inputs = _layer(tf, first)
        for entry in layers[1:]:
            layer = _layer(tf, entry)
            x = layer(x)
            built[layer.name] = layer
        model = tf.keras.Model(inputs, x, name=config["config"]["name"])
    else:
        tensors: dict[str, list[Any]] = {}
        for entry in layers:
            name = entry["config"]["name"]
            if entry["class_name"] == "InputLayer":
                tensors[name] = [_layer(tf, entry)]
                continue
            layer = _layer(tf, entry)
            built[name] = layer
            tensors[name] = []
            for node in entry.get("inbound_nodes", []):
                sources = [_tensor(tensors, ref) for ref in _history(node["args"])]
                args = sources[0] if len(sources) == 1 else sources
                tensors[name].append(layer(args))
        cfg = config["config"]
        ins = [_tensor(tensors, r) for r in _refs(cfg["input_layers"])]
        outs = [_tensor(tensors, r) for r in _refs(cfg["output_layers"])]
        model = tf.keras.Model(ins if len(ins) > 1 else ins[0],
                               outs if len(outs) > 1 else outs[0], name=cfg["name"])
    for name, layer in built.items():
        own = sorted((k for k in weights if k.rsplit("/", 1)[0] == name),
                     key=lambda k: int(k.rsplit("/", 1)[1]))
        if own:
            layer.set_weights([weights[k] for k in own])
    return model


def _tensor(tensors: dict[str, list[Any]], ref: list[Any]) -> Any:
    """The tensor a (layer, node, tensor) reference names: the node's output, or one of them."""
    out = tensors[ref[0]][ref[1]]
    return out[ref[2]] if isinstance(out, (list, tuple)) else out


def _refs(value: Any) -> list[list[Any]]:
    """``["x", 0, 0]`` or ``[["x", 0, 0], ...]`` -> a list of references."""
    return [value] if value and isinstance(value[0], str) else list(value)


def _outputs(model: Any, x: Any) -> list[Any]:
    out = model.predict(x, batch_size=32, verbose=0)
    return [o for o in out] if isinstance(out, list) else [out]


def quantise(request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import model_compression_toolkit as mct

    folder = request["folder"]
    with open(os.path.join(folder, "model.json"), encoding="utf-8") as f:
        config = json.load(f)
    with np.load(os.path.join(folder, "weights.npz")) as data:
        weights = {k: data[k] for k in data.files}
    model = rebuild(tf, config, weights)
    calib = np.load(os.path.join(folder, "calib.npy"))
    val_path = os.path.join(folder, "val.npy")
    val = np.load(val_path) if os.path.exists(val_path) else None
    batch = max(1, min(16, len(calib)))

    def representative() -> Any:
        for start in range(0, len(calib), batch):
            yield [calib[start:start + batch]]

    tpc = mct.get_target_platform_capabilities("tensorflow", "imx500",
                                               target_platform_version="v1")
    mode = request["mode"]
    if mode == "gptq":
        gptq = mct.gptq.get_keras_gptq_config(n_epochs=request.get("epochs", 50))
        quantised, _ = mct.gptq.keras_gradient_post_training_quantization(
            model, representative, gptq_config=gptq, target_platform_capabilities=tpc)
    elif mode == "mixed":
        core = mct.core.CoreConfig(mixed_precision_config=mct.core.MixedPrecisionQuantizationConfig(
            num_of_images=min(32, len(calib))))
        budget = mct.core.ResourceUtilization(weights_memory=float(request["weights_bytes"]))
        quantised, _ = mct.ptq.keras_post_training_quantization(
            model, representative, target_resource_utilization=budget, core_config=core,
            target_platform_capabilities=tpc)
    else:
        quantised, _ = mct.ptq.keras_post_training_quantization(
            model, representative, target_platform_capabilities=tpc)
    out = request["out"]
    mct.exporter.keras_export_model(model=quantised, save_model_path=out)
    if val is not None:
        arrays = {f"float/{i}": o for i, o in enumerate(_outputs(model, val))}
        arrays.update({f"quantised/{i}": o for i, o in enumerate(_outputs(quantised, val))})
        np.savez(os.path.join(folder, f"outputs-{mode}.npz"), **arrays)
    from importlib.metadata import version

    return {"ok": True, "mode": mode, "parameters": int(model.count_params()),
            "versions": {"model-compression-toolkit": mct.__version__,
                         "imx500-converter": version("imx500-converter"),
                         "tensorflow": tf.__version__}}


def main() -> int:
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            request = json.load(f)
        answer = quantise(request)
    except Exception as exc:  # the caller turns this into one line
        if os.environ.get("EDGEKIT_DEBUG"):
            traceback.print_exc()
        text = str(exc).strip().splitlines()
        answer = {"ok": False, "error": f"{type(exc).__name__}: {text[0] if text else ''}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
