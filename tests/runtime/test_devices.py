"""What the runtime layer reports about this process's devices and kernels."""

from __future__ import annotations

import pytest


def test_loaded_hub_kernels_names_what_the_kernels_package_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from harness.runtime.devices import loaded_hub_kernels

    monkeypatch.delitem(sys.modules, "kernels", raising=False)
    assert loaded_hub_kernels() == []  # never imported: nothing loaded, and it is not imported to find out
    assert "kernels" not in sys.modules
    info = types.SimpleNamespace(repo_id="kernels-community/quantization-bitsandbytes", revision="abc123")
    fake = types.ModuleType("kernels")
    fake.get_loaded_kernels = lambda: [types.SimpleNamespace(repo_info=info),  # type: ignore[attr-defined]
                                       types.SimpleNamespace(repo_info=None, metadata=types.SimpleNamespace(name="local"))]
    monkeypatch.setitem(sys.modules, "kernels", fake)
    assert loaded_hub_kernels() == ["kernels-community/quantization-bitsandbytes@abc123", "local"]
