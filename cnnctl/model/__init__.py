"""Stage 3 — the network: `model.layers` → a Keras model that carries its input preprocessing; `train` → compiled.

layers.py            any keras.layers class by name, built with its kwargs; errors that name the YAML path
build.py             keras.Input, the input scaling, each configured layer, the output check; augmentation
mixing.py            data.mix: Keras' MixUp and CutMix layers for the training batches
compile.py           optimizer, loss and metrics through Keras' own namespaces
fused_batch_norm.py  TensorFlow's fused batch-norm kernel for training steps
summary.py           the layer table: shapes, parameters, receptive field, FLOPs
backbone.py          keras.applications backbones, their preprocessing, weights from a previous run
unfreeze.py          what train.fine_tune unfreezes for the second phase
output_layer.py      the layer whose weights carry a temperature (checked before training)
tta.py               evaluate.tta: flip as one Keras model around the trained one
json_schema.py       the JSON Schema of a config file, with every keras.layers class's arguments (`cnnctl schema`)
"""

from cnnctl.runtime import quiet_backend_import

# Every module here uses Keras, and Keras imports TensorFlow with pages of C++ start-up logs: import it quietly
# first (when it is installed: on JAX it is optional). A package's __init__ runs before any of its modules, so
# this holds whichever module is imported first.
quiet_backend_import()
