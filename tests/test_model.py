"""The builder: every layer family through keras.layers, clear errors, receptive field and FLOPs."""

from __future__ import annotations

import pytest

from cnnctl.config.schema import ModelConfig, TrainConfig
from cnnctl.errors import ConfigError
from cnnctl.model.build import build_augmenter, build_model
from cnnctl.model.compile import compile_model, make_optimizer, needs_one_hot
from cnnctl.model.summary import describe


def model_config(*layers, input_shape=None) -> ModelConfig:
    return ModelConfig.model_validate({"layers": list(layers), "input_shape": input_shape})


family_cases = [
    # (input shape, layers, expected output shape of the last conv/pool block)
    (
        (32, 2),
        [{"Conv1D": {"filters": 4, "kernel_size": 5}}, {"MaxPooling1D": {"pool_size": 2}}, "GlobalAveragePooling1D"],
        (None, 3),
    ),
    (
        (12, 12, 3),
        [
            {"Conv2D": {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}},
            "BatchNormalization",
            {"Dropout": {"rate": 0.5}},
            {"SeparableConv2D": {"filters": 8, "kernel_size": 3}},
            {"AveragePooling2D": {"pool_size": 2}},
            "Flatten",
        ],
        (None, 3),
    ),
    (
        (8, 8, 8, 1),
        [{"Conv3D": {"filters": 2, "kernel_size": 3}}, {"MaxPooling3D": {"pool_size": 2}}, "Flatten"],
        (None, 3),
    ),
    (
        (10, 10, 1),
        [
            {"DepthwiseConv2D": {"kernel_size": 3}},
            {"Conv2DTranspose": {"filters": 2, "kernel_size": 2, "strides": 2}},
            "GlobalMaxPooling2D",
            {"Activation": {"activation": "relu"}},
        ],
        (None, 3),
    ),
]


@pytest.mark.parametrize("input_shape, layers, output", family_cases)
def test_layer_families_build_through_keras(input_shape, layers, output):
    cfg = model_config(*layers, {"Dense": {"units": 3, "activation": "softmax"}})
    model = build_model(cfg, input_shape, num_classes=3)
    assert model.output_shape == output
    assert model.input_shape == (None,) + input_shape


error_cases = [
    ([{"Conv2d": {"filters": 4, "kernel_size": 3}}], "model.layers[0]: unknown layer 'Conv2d'; did you mean Conv2D?"),
    (["BatchNorm"], "model.layers[0]: unknown layer 'BatchNorm'; did you mean BatchNormalization?"),
    (
        [{"Conv2D": {"filters": 4, "kernel_size": 3, "stride": 2}}],
        "model.layers[0] (Conv2D): unknown argument 'stride' (did you mean 'strides'?); Conv2D accepts: ",
    ),
    (  # a misspelt required argument: Python only says the right one is missing
        [{"Conv2D": {"filters": 4, "kernel_siz": 3}}],
        "model.layers[0] (Conv2D): unknown argument 'kernel_siz' (did you mean 'kernel_size'?); Conv2D accepts: ",
    ),
    ([{"Conv2D": {"filters": 4}}], "model.layers[0] (Conv2D): Conv2D needs kernel_size; given {filters: 4}"),
    (
        [{"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relux"}}],
        "model.layers[0] (Conv2D): unknown activation 'relux'; did you mean 'relu'?",
    ),
    (
        [{"Conv2D": {"filters": -4, "kernel_size": 3}}],
        "model.layers[0] (Conv2D): Invalid value for argument `filters`. Expected a strictly positive value. "
        "Received filters=-4.",
    ),
    (
        [{"Conv2D": {"filters": 4, "kernel_size": 9}}],
        "model.layers[0] (Conv2D): the kernel or pool window is larger than its input (None, 8, 8, 1); use "
        "padding: same, a smaller kernel_size, or fewer pooling layers before it",
    ),
    (
        [
            {"MaxPooling2D": {"pool_size": 2}},
            {"MaxPooling2D": {"pool_size": 2}},
            {"MaxPooling2D": {"pool_size": 2}},
            {"MaxPooling2D": {"pool_size": 2}},
        ],
        "model.layers[3] (MaxPooling2D): ",
    ),
    (
        [{"Conv1D": {"filters": 4, "kernel_size": 3}}],
        "model.layers[0] (Conv1D): expects input of rank 3 but gets (None, 8, 8, 1) (rank 4); check the data shape, "
        "model.input_shape, or the layer family (Conv1D/2D/3D)",
    ),
    (
        [{"Dense": {"units": 10, "activation": "softmax"}}],
        "model.layers[0] (Dense): output shape (None, 8, 8, 10) is not flat: add Flatten (or GlobalAveragePooling) "
        "before the Dense layers",
    ),
    (
        ["Flatten", {"Dense": {"units": 7}}],
        "model.layers[1] (Dense): gives 7 outputs but the data has 10 classes; set units: 10 on the last layer",
    ),
]


@pytest.mark.parametrize("pixel_scale", [1.0, 16.0])  # the scaling layer in front shifts no config index
@pytest.mark.parametrize("layers, message", error_cases)
def test_builder_errors_name_layer_index_and_argument(layers, message, pixel_scale):
    with pytest.raises(ConfigError) as caught:
        build_model(model_config(*layers), (8, 8, 1), num_classes=10, pixel_scale=pixel_scale)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_model_scales_its_inputs_and_loads_in_plain_keras(tmp_path):
    """pixel_scale becomes a stock Rescaling layer first: model.keras takes examples in their own units."""
    import keras
    import numpy as np

    cfg = model_config(
        {"Conv2D": {"filters": 4, "kernel_size": 3}},
        {"MaxPooling2D": {"pool_size": 2}},
        "Flatten",
        {"Dense": {"units": 3, "activation": "softmax"}},
    )
    model = build_model(cfg, (8, 8, 1), 3, pixel_scale=255.0)
    assert [type(layer).__name__ for layer in model.layers] == [
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert model.layers[0].name == "scale_inputs"
    rows = describe(model).rows
    assert [(row.index, row.kind) for row in rows] == [
        (None, "Rescaling"),
        (0, "Conv2D"),
        (1, "MaxPooling2D"),
        (2, "Flatten"),
        (3, "Dense"),
    ]
    assert (rows[0].params, rows[0].flops, rows[1].receptive_field) == (0, 0, "3×3")
    assert describe(model).flops == describe(build_model(cfg, (8, 8, 1), 3)).flops
    assert [layer.name for layer in build_model(cfg, (8, 8, 1), 3).layers][0] != "scale_inputs"  # scale 1: none

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    raw = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.float32)
    unscaled = keras.Sequential([keras.Input((8, 8, 1))] + loaded.layers[1:])  # the same weights, no scaling
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), unscaled.predict(raw / 255, verbose=0), atol=1e-6)


def test_the_scaling_layer_computes_in_float32_under_mixed_precision():
    """Raw values need not fit float16 (largest 65504): the scaling runs in float32, the layers after it in
    the policy's dtype."""
    import numpy as np

    from cnnctl import runtime

    cfg = model_config(
        {"Conv2D": {"filters": 2, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 2, "activation": "softmax"}}
    )
    with runtime.precision_policy("mixed_float16"):
        model = build_model(cfg, (6, 6, 1), 2, pixel_scale=100000.0)
        assert [layer.dtype_policy.name for layer in model.layers][:2] == ["float32", "mixed_float16"]
        probabilities = model.predict(np.full((2, 6, 6, 1), 100000.0, np.float32), verbose=0)
    assert np.all(np.isfinite(probabilities))


def test_two_classes_may_use_one_sigmoid_unit():
    model = build_model(model_config("Flatten", {"Dense": {"units": 1, "activation": "sigmoid"}}), (4, 4, 1), 2)
    assert model.output_shape == (None, 1)


def test_receptive_field_and_jump_follow_the_recurrence():
    """r_out = r_in + (k_eff - 1) * j_in and j_out = j_in * stride, worked by hand in the comments."""
    cfg = model_config(
        {"Conv2D": {"filters": 4, "kernel_size": 3}},  # r=3, j=1
        {"Conv2D": {"filters": 4, "kernel_size": 3}},  # r=5, j=1
        {"MaxPooling2D": {"pool_size": 2}},  # r=6, j=2
        {"Conv2D": {"filters": 4, "kernel_size": 3, "dilation_rate": 2}},  # k_eff=5: r=6+4*2=14, j=2
        {"Conv2D": {"filters": 4, "kernel_size": [3, 1], "strides": 2}},  # r=(18, 14), j=4
        "Flatten",
        {"Dense": {"units": 3, "activation": "softmax"}},
    )
    rows = describe(build_model(cfg, (40, 40, 1), 3)).rows
    assert [(row.receptive_field, row.jump) for row in rows] == [
        ("3×3", "1×1"),
        ("5×5", "1×1"),
        ("6×6", "2×2"),
        ("14×14", "2×2"),
        ("18×14", "4×4"),
        ("all", "—"),
        ("all", "—"),
    ]


def test_flops_and_params_match_hand_computation():
    cfg = model_config(
        {"Conv2D": {"filters": 8, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 10, "activation": "softmax"}}
    )
    summary = describe(build_model(cfg, (10, 10, 2), 10))
    conv_out = 8 * 8  # valid padding: 10 - 3 + 1
    conv_flops = 2 * (3 * 3 * 2 * 8) * conv_out
    dense_flops = 2 * (conv_out * 8) * 10
    assert [row.flops for row in summary.rows] == [conv_flops, 0, dense_flops]
    assert summary.flops == conv_flops + dense_flops
    assert summary.total_params == (3 * 3 * 2 * 8 + 8) + (conv_out * 8 * 10 + 10)
    assert summary.rows[0].output_shape == "(None, 8, 8, 8)"


def test_one_dimensional_receptive_field():
    cfg = model_config(
        {"Conv1D": {"filters": 2, "kernel_size": 5}},
        {"MaxPooling1D": {"pool_size": 3}},
        {"Conv1D": {"filters": 2, "kernel_size": 3}},
        "GlobalAveragePooling1D",
        {"Dense": {"units": 2, "activation": "softmax"}},
    )
    rows = describe(build_model(cfg, (60, 1), 2)).rows
    assert [(row.receptive_field, row.jump) for row in rows[:3]] == [("5", "1"), ("7", "3"), ("13", "3")]


def test_optimizer_loss_and_metrics_come_from_keras():
    import keras

    train = TrainConfig.model_validate(
        {
            "optimizer": {"name": "SGD", "learning_rate": 0.05, "momentum": 0.9},
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy", "auc"],
        }
    )
    optimizer = make_optimizer(train)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    model = build_model(model_config("Flatten", {"Dense": {"units": 3, "activation": "softmax"}}), (2, 2, 1), 3)
    compile_model(model, train, jit_compile=False)
    assert needs_one_hot("categorical_crossentropy") and not needs_one_hot("sparse_categorical_crossentropy")


@pytest.mark.parametrize(
    "train, message",
    [
        (
            {"optimizer": {"name": "adamm"}},
            "train.optimizer.name: unknown optimizer 'adamm'; did you mean 'adam'? available: ",
        ),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "train.optimizer (Adam): "),
        (
            {"loss": "categorical_crossentropyy"},
            "train.loss: unknown loss 'categorical_crossentropyy'; did you mean 'categorical_crossentropy'?",
        ),
        ({"metrics": ["acuracy"]}, "train.metrics[0]: unknown metric 'acuracy'; did you mean 'accuracy'?"),
    ],
)
def test_train_section_errors(train, message):
    model = build_model(model_config("Flatten", {"Dense": {"units": 3, "activation": "softmax"}}), (2, 2, 1), 3)
    with pytest.raises(ConfigError) as caught:
        compile_model(model, TrainConfig.model_validate(train))
    assert str(caught.value).startswith(message), str(caught.value)


def test_augmenter_is_keras_preprocessing_layers():
    from cnnctl.config.schema import DataConfig

    data = DataConfig.model_validate(
        {"augment": [{"RandomFlip": {"mode": "horizontal"}}, {"RandomRotation": {"factor": 0.1}}]}
    )
    augmenter = build_augmenter(data.augment)
    assert [type(layer).__name__ for layer in augmenter.layers] == ["RandomFlip", "RandomRotation"]
    with pytest.raises(
        ConfigError, match=r"^data.augment\[0\]: unknown layer 'RandomFlipp'; did you mean RandomFlip\?"
    ):
        build_augmenter(DataConfig.model_validate({"augment": ["RandomFlipp"]}).augment)


def test_cosine_schedule_decays_to_zero_over_all_steps():
    train = TrainConfig.model_validate(
        {"lr_schedule": "cosine", "epochs": 3, "optimizer": {"name": "adamw", "learning_rate": 0.01}}
    )
    schedule = make_optimizer(train, steps_per_epoch=10)._learning_rate
    assert [round(float(schedule(step)), 6) for step in (0, 15, 30)] == [0.01, 0.005, 0.0]


def test_a_loss_with_options_is_built_as_its_keras_class():
    """`loss: {name, **kwargs}` like the optimizer; label smoothing checked against the formula, not the class."""
    import keras
    import numpy as np

    train = TrainConfig.model_validate({"loss": {"name": "categorical_crossentropy", "label_smoothing": 0.2}})
    assert train.loss_name == "categorical_crossentropy" and needs_one_hot(train.loss_name)
    model = build_model(model_config("Flatten", {"Dense": {"units": 4, "activation": "softmax"}}), (2, 2, 1), 4)
    loss = compile_model(model, train, jit_compile=False).loss
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    y_true = np.array([[0.0, 1.0, 0.0, 0.0]])
    y_pred = np.array([[0.1, 0.6, 0.2, 0.1]])
    smoothed = y_true * 0.8 + 0.2 / 4  # the smoothed target: 0.05 everywhere, 0.85 on the true class
    assert float(loss(y_true, y_pred)) == pytest.approx(-(smoothed * np.log(y_pred)).sum(), rel=1e-5)
    mse = TrainConfig.model_validate({"loss": {"name": "mse", "reduction": "sum"}})  # an alias finds its class
    assert isinstance(compile_model(model, mse, jit_compile=False).loss, keras.losses.MeanSquaredError)


@pytest.mark.parametrize(
    "loss, message",
    [
        (
            {"name": "categorical_crossentropy", "label_smothing": 0.1},
            "train.loss (CategoricalCrossentropy): CategoricalCrossentropy.__init__() got an unexpected keyword argument "
            "'label_smothing'",
        ),
        (
            {"name": "categorical_crossentropyy", "label_smoothing": 0.1},
            "train.loss: unknown loss 'categorical_crossentropyy'; did you mean 'categorical_crossentropy'?",
        ),
    ],
)
def test_loss_option_errors(loss, message):
    model = build_model(model_config("Flatten", {"Dense": {"units": 3, "activation": "softmax"}}), (2, 2, 1), 3)
    with pytest.raises(ConfigError) as caught:
        compile_model(model, TrainConfig.model_validate({"loss": loss}))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "flags, gpu, backend, policy, reason",
    [
        ({"avx2", "fma"}, False, "tensorflow", "float32", "auto: a CPU without bfloat16 instructions"),
        ({"avx512f", "avx512_bf16"}, False, "tensorflow", "mixed_bfloat16", "auto: the CPU has avx512_bf16"),
        ({"amx_bf16", "amx_tile", "avx512_bf16"}, False, "tensorflow", "mixed_bfloat16", "amx_bf16, avx512_bf16"),
        ({"amx_bf16"}, False, "jax", "float32", "auto: bfloat16 is measured faster on TensorFlow only"),
        ({"amx_bf16"}, True, "tensorflow", "mixed_float16", "auto: a GPU"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, gpu, backend, policy, reason):
    """mixed_bfloat16 only where the CPU computes bfloat16 itself (AMX-BF16, AVX512-BF16); the flags are faked."""
    from cnnctl import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(runtime, "has_gpu", lambda: gpu)
    monkeypatch.setattr(runtime, "backend", lambda: backend)
    assert runtime.resolve_precision("auto") == policy
    assert reason in runtime.precision_reason("auto")
    assert runtime.resolve_precision("off") == "float32" and runtime.precision_reason("off") == "train.mixed_precision"


def test_cpu_flags_are_read_from_this_machine():
    import platform
    from pathlib import Path

    from cnnctl import runtime

    if Path("/proc/cpuinfo").exists() and platform.machine() in ("x86_64", "AMD64"):
        assert {"fpu", "sse2"} <= runtime.cpu_flags()  # every x86-64 CPU says so: the flags line was read
    elif not Path("/proc/cpuinfo").exists():
        assert runtime.cpu_flags() == set()


def test_counting_weights_before_building_leaves_the_seeded_weights_as_they_were():
    # build_model counts each layer's weights on a shape-only copy first; the copy must not draw from the random
    # generators the real layers' initializers use, or the same seed would give other weights than plain Keras.
    import keras
    import numpy as np

    from cnnctl.model.layers import make_layer

    config = ModelConfig.model_validate(
        {"layers": [{"Conv2D": {"filters": 4, "kernel_size": 3}}, "Flatten", {"Dense": {"units": 3}}]}
    )
    keras.utils.set_random_seed(11)
    built = build_model(config, (8, 8, 1), 3)
    keras.utils.set_random_seed(11)
    x = inputs = keras.Input((8, 8, 1))
    for index, spec in enumerate(config.layers):
        x = make_layer(spec, f"model.layers[{index}]")(x)
    plain = keras.Model(inputs, x)
    for ours, theirs in zip(built.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    # Nor Keras' layer-name counter (model.from_run matches layers by name): each of plain Keras' layers, built
    # next, is numbered one past cnnctl's (conv2d_3 after conv2d_2), not two.

    def number(name: str) -> int:
        return int(name.rsplit("_", 1)[1]) if name.rsplit("_", 1)[-1].isdigit() else 0

    ours = [layer.name for layer in built.layers if not layer.name.startswith("scale")]
    theirs = [layer.name for layer in plain.layers if not layer.name.startswith("input")]
    assert [number(b) - number(a) for a, b in zip(ours, theirs, strict=True)] == [1, 1, 1], (ours, theirs)
