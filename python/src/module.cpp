// _flame: flame's C++ core as a PyTorch extension module. Tensors cross as
// torch.Tensor (same LibTorch, no copies); long calls release the GIL.
#include "bindings.h"
#include "util/config_files.h"

namespace py = pybind11;

PYBIND11_MODULE(_flame, m) {
  m.doc() = "flame's C++ core (import the flame package, not this module)";
  m.attr("__version__") = FLAME_VERSION;
  m.attr("torch_version") = FLAME_TORCH_VERSION;
  m.def(
      "config_dir", [](const std::string& kind) { return flame::config_dir(kind).string(); }, py::arg("kind"),
      "$FLAME_CONFIG_DIR/<kind>, else the source tree's configs/<kind> (as the flame binary)");
  flame::python::bind_errors(m);
  flame::python::bind_text(m);
  flame::python::bind_store(m);
  flame::python::bind_model(m);
}
