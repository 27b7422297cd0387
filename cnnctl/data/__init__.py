"""Stage 2 — the data: `data:` in the config → a `Dataset` of train/val/test splits and their tf.data pipelines.

raw.py       RawData (arrays as a source gives them) and the sources registered from Python
builtin.py   digits (bundled), mnist / fashion_mnist / cifar via keras.datasets or the Debian files
files.py     npz, npy folders, IDX, CSV
folders.py   folders of images, decoded lazily (ImageFiles); given val/test folders
manifest.py  a CSV/TSV/JSONL table of files and labels, with an optional split column
sources.py   `data.source` → the loader of its family
arrays.py    labels → class indices, the model's layout, stratified and K-fold splits
dataset.py   load_data: the steps above in order, and the batched pipelines
limits.py    what a data file may be: regular files only, bounded sizes and inflated sizes
batches.py   the same batches as a keras PyDataset where TensorFlow is not installed
shard.py     each device's and process's part of a batch (Keras' DataParallel)
"""
