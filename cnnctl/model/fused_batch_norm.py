"""Model: train keras.layers.BatchNormalization with TensorFlow's fused kernel.

Keras 3 normalizes a training batch on TensorFlow with separate ops (tf.nn.moments, then
tf.nn.batch_normalization), each a pass over the activations forward and backward. TensorFlow's
FusedBatchNormV3 does the same in one kernel each way (oneDNN on CPUs, cuDNN on GPUs). On the
2-core CPU, a VGG-style net with five batch-norms trained 15-18% faster per step (benchmarks/RESULTS.md).

The fused `call` is bound to each layer instance rather than put in a subclass, so model.keras still
names keras.layers.BatchNormalization and loads anywhere Keras does, cnnctl or not. Only the training
path of 4-D channels-last inputs changes; every other case (inference, masks, renorm, synchronized,
other ranks or axes) runs Keras' own code.
"""

from __future__ import annotations

import types
from typing import Any

import keras


def use_fused_batch_norm(model: keras.Model) -> int:
    """Give every BatchNormalization in `model` (nested models included) the fused training path; returns how
    many layers got it. A no-op off the TensorFlow backend."""
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and "call" not in vars(layer):
            layer.call = types.MethodType(_fused_call, layer)
            count += 1
    return count


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _fused_call(self: keras.layers.BatchNormalization, inputs: Any, training: Any = None, mask: Any = None) -> Any:
    fusable = (
        training
        and self.trainable
        and mask is None
        and not self.renorm
        and not self.synchronized
        and len(inputs.shape) == 4
        and self.axis % 4 == 3
    )  # NHWC training batches only
    if not fusable:
        return keras.layers.BatchNormalization.call(self, inputs, training=training, mask=mask)

    import tensorflow as tf

    x = tf.cast(inputs, tf.float32)  # as Keras does: batch statistics in float32 under mixed precision too
    channels = x.shape[-1]
    scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
    offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
    empty = tf.constant([], tf.float32)  # no running statistics in: exponential_avg_factor=1 returns the batch's
    y, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=scale,
        offset=offset,
        mean=empty,
        variance=empty,
        epsilon=self.epsilon,
        exponential_avg_factor=1.0,
        data_format="NHWC",
        is_training=True,
    )
    # The kernel hands back n/(n-1) × the variance it normalized with; Keras keeps the plain (biased) one in
    # moving_variance, and so do we, so a model trains to the same statistics either way.
    n = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)  # int64: no overflow on huge batches
    variance = unbiased_variance * (n - 1.0) / n
    momentum = self.momentum
    self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
    self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(y, self.compute_dtype)
