"""Stage 1 — the config: YAML + `--set` overrides → a validated `Config`.

schema.py       the pydantic sections, their defaults and the rules each value must follow (the whole Config)
section.py      the base every section shares: unknown keys refused, no inf or NaN
layer_spec.py   one `model.layers` / `data.augment` entry; layers and arguments that would run code refused
data_schema.py  the `data:` section: source, splits, labels, augmentation, mixing
train_schema.py the `train:` section: optimizer, loss, callbacks, moving average, fine-tuning
search_space.py one entry of `tune:`
loading.py      reading the YAML safely, applying `--set key.path=value`, turning validation errors into one line
yaml_loader.py  the bounded, strict safe YAML loaders (depth, aliases, duplicate keys, typed scalars)
sources.py      the names data.source accepts: built-in, file formats, sources registered from Python
reference.py    the configuration reference (Markdown): every key's default, allowed values and description
"""
