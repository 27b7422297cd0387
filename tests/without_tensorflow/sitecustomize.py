"""Put this folder on PYTHONPATH and `import tensorflow` fails in that interpreter, as where TensorFlow is not
installed (the project's GPU machine). A meta-path finder, not `sys.modules["tensorflow"] = None`: Keras checks
`"tensorflow" in sys.modules`, and a None entry there makes its preprocessing layers look for TensorFlow."""

import importlib.abc
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTensorFlow())
