"""convolution_demo: a real photograph through conv → ReLU → max-pool, checked against Keras' own conv and max-pool ops."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from cnnctl.errors import ConfigError, DataError
from cnnctl.reporting.convolution_demo import (
    KERNELS,
    convolution_steps,
    load_grayscale,
    load_kernel,
    read_grayscale,
)


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory):
    """scikit-learn's bundled china.jpg (427×640 RGB), saved as a grayscale PNG."""
    path = tmp_path_factory.mktemp("images") / "china.png"
    Image.fromarray(load_sample_image("china.jpg")).convert("L").save(path)
    return path


@pytest.fixture(scope="module")
def photo(photo_path):
    return load_grayscale(photo_path)


def reference_convolution(image, kernel):
    """What a Conv2D(padding="same") layer computes: Keras' own conv op on a batch of one 1-channel picture."""
    import keras

    batch = np.asarray(image, np.float32)[np.newaxis, :, :, np.newaxis]
    weights = np.asarray(kernel, np.float32)[:, :, np.newaxis, np.newaxis]
    return keras.ops.convert_to_numpy(keras.ops.conv(batch, weights, strides=1, padding="same"))[0, :, :, 0]


def reference_max_pool(array, pool):
    """What MaxPooling2D(pool, strides=pool) computes: Keras' own max_pool op."""
    import keras

    batch = np.asarray(array, np.float32)[np.newaxis, :, :, np.newaxis]
    pooled = keras.ops.max_pool(batch, pool_size=pool, strides=pool, padding="valid")
    return keras.ops.convert_to_numpy(pooled)[0, :, :, 0]


def test_photo_loads_as_float_grayscale_in_unit_range(photo_path, photo):
    assert photo.shape == (427, 640)
    assert photo.dtype == np.float32
    assert 0.0 <= photo.min() < 0.2 and 0.8 < photo.max() <= 1.0
    np.testing.assert_array_equal(photo, np.asarray(Image.open(photo_path), dtype=np.float32) / 255)
    assert read_grayscale(photo_path)[1] is None


def test_colour_jpeg_becomes_luma(tmp_path):
    rgb = load_sample_image("china.jpg")
    path = tmp_path / "china.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    pixels = load_grayscale(path)
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / 255
    assert pixels.shape == (427, 640)
    assert np.abs(pixels - luma).mean() < 0.02  # JPEG loses a little


def test_large_image_is_downscaled_and_says_so(photo_path):
    pixels, note = read_grayscale(photo_path, max_side=320)
    assert pixels.shape == (214, 320)
    assert note == "downscaled from 427×640 to 214×320 for speed (longest side ≤ 320)"
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0


def test_sixteen_bit_image_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 12).reshape(3, 4).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    np.testing.assert_allclose(load_grayscale(path), ramp / 65535, atol=1e-6)


@pytest.mark.parametrize("pool", [2, 3])
def test_steps_have_the_documented_shapes_and_titles(photo, pool):
    height, width = photo.shape
    panels = convolution_steps(photo, KERNELS["sharpen"], pool=pool, kernel_name="sharpen")
    assert [title for title, _ in panels] == [
        f"original {height}×{width}",
        f"convolution (sharpen) {height}×{width}",
        f"ReLU {height}×{width}",
        f"max-pool {pool}×{pool} {height // pool}×{width // pool}",
    ]
    assert [array.shape for _, array in panels] == [(height, width)] * 3 + [(height // pool, width // pool)]
    assert all(array.dtype == np.float32 for _, array in panels)


def test_title_names_the_kernel_size_when_no_name_is_given():
    panels = convolution_steps(np.zeros((6, 6)), np.ones((2, 4)), pool=2)
    assert panels[1][0] == "convolution (2×4 kernel) 6×6"


ASYMMETRIC = np.array([[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0], [-4.0, -2.0, 0.25]])  # catches a flipped kernel
EVEN = np.arange(16.0).reshape(4, 4) / 10 - 0.7  # 'same' padding puts the extra row/column bottom/right


@pytest.mark.parametrize("kernel", [*KERNELS.values(), ASYMMETRIC, EVEN], ids=[*KERNELS, "asymmetric", "even4x4"])
def test_convolution_matches_keras_conv_same_padding(photo, kernel):
    convolved = convolution_steps(photo, kernel)[1][1]
    np.testing.assert_allclose(convolved, reference_convolution(photo, kernel), rtol=0, atol=1e-4)


def test_relu_is_max_of_convolution_and_zero(photo):
    _, (_, convolved), (_, rectified), _ = convolution_steps(photo, KERNELS["edge"])
    assert convolved.min() < -0.5  # edges give strong negative responses: ReLU has work to do
    assert rectified.min() >= 0.0
    np.testing.assert_array_equal(rectified, np.maximum(convolved, 0.0))


@pytest.mark.parametrize("pool", [2, 3])
def test_max_pool_matches_keras_max_pool(photo, pool):
    _, _, (_, rectified), (_, pooled) = convolution_steps(photo, KERNELS["emboss"], pool=pool)
    np.testing.assert_array_equal(pooled, reference_max_pool(rectified, pool))


def test_blur_keeps_a_constant_image_constant_inside_and_zero_pads_the_border():
    constant = np.full((20, 30), 0.7, dtype=np.float32)
    blurred = convolution_steps(constant, KERNELS["blur"])[1][1]
    np.testing.assert_allclose(blurred[1:-1, 1:-1], 0.7, atol=1e-6)
    assert blurred[0, 0] == pytest.approx(0.7 * 9 / 16)  # the corner pixel sees weights 4+2+2+1 of 16


def test_kernel_names_are_case_insensitive_and_copies(photo):
    name, kernel = load_kernel(" Sharpen ")
    assert name == "sharpen"
    np.testing.assert_array_equal(kernel, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    kernel[1, 1] = 0
    assert KERNELS["sharpen"][1, 1] == 5
    assert load_kernel("BLUR")[1].sum() == pytest.approx(1.0)


def test_kernel_from_npy_file(tmp_path):
    path = tmp_path / "diagonal.npy"
    np.save(path, ASYMMETRIC)
    name, kernel = load_kernel(str(path))
    assert name == "diagonal.npy"
    assert kernel.dtype == np.float32
    np.testing.assert_array_equal(kernel, ASYMMETRIC.astype(np.float32))


@pytest.mark.parametrize(
    "file_name, text",
    [
        ("sobel.txt", "# Sobel x\n-1 0 1\n-2 0 2\n-1 0 1\n"),
        ("sobel.csv", "\ufeff-1,0,1\n-2, 0, 2\n-1,0,1\n"),
    ],
)
def test_kernel_from_text_file(tmp_path, file_name, text):
    path = tmp_path / file_name
    path.write_text(text, encoding="utf-8")
    assert load_kernel(str(path)) == (file_name, pytest.approx(np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])))


KERNEL_ERRORS = [
    (
        "sharpn",
        None,
        "--kernel sharpn: unknown kernel; did you mean 'sharpen'? "
        "(sharpen, edge, blur, emboss, or a .npy/.txt/.csv file)",
    ),
    ("gauss", None, "--kernel gauss: unknown kernel; use sharpen, edge, blur, emboss, or a .npy/.txt/.csv file"),
    (
        "missing.npy",
        None,
        "--kernel {path}: no such file; use sharpen, edge, blur, emboss, or an existing .npy/.txt/.csv file",
    ),
    ("cube.npy", np.ones((3, 3, 3)), "--kernel {path}: kernel must be 2-D (rows × columns), got shape (3, 3, 3)"),
    ("row.npy", np.ones(3), "--kernel {path}: kernel must be 2-D (rows × columns), got shape (3,)"),
    (
        "nan.txt",
        "1 2 3\n4 nan 6\n7 8 9\n",
        "--kernel {path}: kernel must contain only finite numbers, got nan at row 2, column 2",
    ),
    (
        "ragged.csv",
        "1,2,3\n4,5\n",
        "--kernel {path}: cannot read numbers (the number of columns changed from 3 to 2 at row 2); "
        "expected rows of equal length, numbers separated by spaces or commas",
    ),
    ("empty.txt", "# nothing\n", "--kernel {path}: kernel is empty; give at least one row of numbers"),
    (
        "kernel.json",
        "[[1, 2], [3, 4]]",
        "--kernel {path}: unsupported file type '.json'; use a .npy file or a .txt/.csv file of numbers",
    ),
]


@pytest.mark.parametrize("file_name, content, message", KERNEL_ERRORS, ids=[case[0] for case in KERNEL_ERRORS])
def test_kernel_errors_name_the_value_and_what_would_be_right(tmp_path, file_name, content, message):
    spec = file_name
    if content is not None or file_name.endswith(".npy"):
        path = tmp_path / file_name
        spec = str(path)
        if isinstance(content, str):
            path.write_text(content)
        elif content is not None:
            np.save(path, content)
    with pytest.raises(ConfigError) as caught:
        load_kernel(spec)
    assert str(caught.value).startswith(message.format(path=spec))
    assert "\n" not in str(caught.value)


def test_text_that_is_not_an_image_is_a_data_error(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("this is not a picture")
    with pytest.raises(DataError, match=r"^IMAGE .*x\.png: cannot read as an image \(not an image file"):
        load_grayscale(path)


def test_missing_image_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"^IMAGE .*nope\.jpg: no such file"):
        load_grayscale(tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    "pool, message",
    [
        (0, "--pool 0: must be a whole number of pixels ≥ 1, e.g. --pool 2"),
        (2.5, "--pool 2.5: must be a whole number of pixels ≥ 1, e.g. --pool 2"),
        (8, "--pool 8: larger than the image (5×7); use at most 5"),
    ],
)
def test_bad_pool_is_a_config_error(pool, message):
    with pytest.raises(ConfigError) as caught:
        convolution_steps(np.zeros((5, 7)), KERNELS["edge"], pool=pool)
    assert str(caught.value) == message


def test_a_thin_image_keeps_its_short_side_when_downscaled(tmp_path):
    """A 10000×10 picture scaled as a whole became 1024×1, and the default 2×2 pooling was then refused with a
    size the user never gave."""
    path = tmp_path / "tall.png"
    Image.fromarray(np.full((10000, 10), 200, np.uint8)).save(path)
    pixels, note = read_grayscale(path)
    assert pixels.shape == (1024, 10)
    assert note == "downscaled from 10000×10 to 1024×10 for speed (longest side ≤ 1024)"
