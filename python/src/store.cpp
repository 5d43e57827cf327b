// An embedding store (text/embedding_store.h) from Python: memory-mapped,
// rows by index or key. Rows are returned as copies: the maps are read-only,
// and a write into a view of one would crash the interpreter.
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "text/embedding_store.h"
#include "text/store_shard.h"

namespace flame::python {

void bind_store(py::module_& m) {
  using text::EmbeddingStore;
  py::class_<EmbeddingStore, std::shared_ptr<EmbeddingStore>>(m, "Store")
      .def(py::init([](const std::string& path) {
             py::gil_scoped_release release;
             return std::make_shared<EmbeddingStore>(EmbeddingStore::open(path));
           }),
           py::arg("path"))
      .def_property_readonly("path", [](const EmbeddingStore& s) { return s.dir().string(); })
      .def("__len__", &EmbeddingStore::size)
      .def_property_readonly("keys", &EmbeddingStore::keys)
      .def_property_readonly("num_facets", &EmbeddingStore::num_facets)
      .def_property_readonly("dim", &EmbeddingStore::dim)
      .def_property_readonly("facets", &EmbeddingStore::facets)
      .def_property_readonly("storage_dtype", [](const EmbeddingStore& s) { return s.identity().dtype; })
      .def_property_readonly("normalized", [](const EmbeddingStore& s) { return s.identity().normalized; })
      .def_property_readonly("dtype",
                             [](const EmbeddingStore& s) {
                               // What rows come back as: int8 rows are dequantised to float32.
                               const torch::ScalarType t = text::store_torch_dtype(s.identity());
                               return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(
                                   torch::getTHPDtype(t == torch::kChar ? torch::kFloat32 : t)));
                             })
      .def_property_readonly("manifest", [](const EmbeddingStore& s) { return s.manifest().dump(); })
      .def("index_of", &EmbeddingStore::index_of, py::arg("key"))
      .def(
          "row", [](const EmbeddingStore& s, int64_t index) { return s.get(index).clone(); },
          py::arg("index"), py::call_guard<py::gil_scoped_release>())
      .def(
          "row_of_key", [](const EmbeddingStore& s, const std::string& key) { return s.get(key).clone(); },
          py::arg("key"), py::call_guard<py::gil_scoped_release>())
      .def(
          "gather",
          [](const EmbeddingStore& s, const std::vector<int64_t>& indices) {
            return s.gather(indices, torch::kFloat32);
          },
          py::arg("indices"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace flame::python
