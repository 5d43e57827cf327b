// The pieces of flame's Python module (_flame), one file per concept; module.cpp
// puts them together. The Python package python/flame/ wraps them.
#pragma once

#include <torch/extension.h>

namespace flame::python {

namespace py = pybind11;

// flame::Error -> flame.Error (a ValueError); std::filesystem errors ->
// FileNotFoundError / PermissionError / OSError, with flame's message.
void bind_errors(py::module_& m);
// LLM, TextEncoder, Tokenizer.
void bind_text(py::module_& m);
// Store (an embedding store, memory-mapped).
void bind_store(py::module_& m);
// Model (a trained run or checkpoint, as flame eval loads it), the eval image
// transform, and import of an OpenCLIP export.
void bind_model(py::module_& m);

}  // namespace flame::python
