"""Let ``bpf.maps()``, ``bpf.programs()`` and ``bpf.links()`` work although ``maps`` etc. are modules.

API.md promises both the modules (``ebpf.core.maps``) and the enumeration functions of the same
name on the facade.  Importing a submodule sets it as an attribute of the package, so the
module itself is made callable: calling it calls the function of its own name.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def make_module_callable(module_name: str) -> None:
    """Make ``sys.modules[module_name]`` callable as its same-named function."""
    module = sys.modules[module_name]
    func_name = module_name.rsplit(".", 1)[-1]

    class _CallableModule(types.ModuleType):
        __doc__ = module.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, func_name)(*args, **kwargs)

    module.__class__ = _CallableModule
