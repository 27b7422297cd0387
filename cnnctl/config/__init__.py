"""Stage 1 — the config: YAML + `--set` overrides → a validated `Config`.

schema.py       the pydantic sections, their defaults and the rules each value must follow
loading.py      reading the YAML safely, applying `--set key.path=value`, turning validation errors into one line
json_schema.py  the JSON Schema of a config file, for editors (`cnnctl schema`)
reference.py    the configuration reference (Markdown): every key's default, allowed values and description
"""
