// A trained model from Python, loaded as `flame eval` loads it (eval::EvalModels):
// the image encoder, and its text side as its training stores were made (the
// checkpoint's LLM identity checked, its layer, prompt sets and facet
// positions), or a CLIP baseline's own text tower. The eval image transform
// and the import of an OpenCLIP export are here too.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "data/image_decode.h"
#include "data/image_transform.h"
#include "eval/eval_models.h"
#include "eval/task_common.h"
#include "train/checkpoint.h"
#include "train/open_clip_format.h"
#include "util/error.h"
#include "util/file.h"

namespace flame::python {

namespace {

struct Model {
  std::string path;
  bool has_text = false;
  bool sigmoid_loss = false;  // the run trained logit_bias (OpenCLIP exposes it for SigLIP only)
  std::unique_ptr<eval::EvalModels> models;

  void require_text() const {
    if (!has_text)
      fail(
          "{} is a FLAME model: encoding text needs the frozen LLM it was trained against (flame.load(..., "
          "llm=PATH))",
          path);
  }
};

std::shared_ptr<Model> load_model(const std::string& path, const std::string& llm, const std::string& dtype,
                                  const std::string& device, int64_t batch_size, bool allow_llm_mismatch) {
  if (batch_size < 1) fail("batch_size must be at least 1, got {}", batch_size);
  eval::EvalOptions o;
  o.model = path;
  o.llm = llm;
  o.dtype = dtype;
  o.device = device;
  o.batch_size = batch_size;
  o.allow_llm_mismatch = allow_llm_mismatch;
  auto model = std::make_shared<Model>();
  model->path = path;
  model->models = std::make_unique<eval::EvalModels>(o, /*needs_text=*/!llm.empty());
  model->has_text = !llm.empty() || model->models->is_clip();
  const nlohmann::json config = read_json_file(train::resolve_checkpoint(path) / "config.json");
  model->sigmoid_loss = train::trained_with_sigmoid_loss(config);
  return model;
}

// uint8 [H, W, 3] RGB -> the model's eval pixels [3, S, S].
torch::Tensor transform_pixels(const torch::Tensor& hwc, int64_t size) {
  if (!hwc.defined() || hwc.dim() != 3 || hwc.size(2) != 3 || hwc.scalar_type() != torch::kUInt8)
    fail("an image must be a uint8 [H, W, 3] RGB tensor, got {} {}",
         hwc.defined() ? c10::toString(hwc.scalar_type()) : "none",
         hwc.defined() ? c10::str(hwc.sizes()) : "");
  if (hwc.size(0) < 1 || hwc.size(1) < 1)
    fail("an image must have at least one pixel, got {}", c10::str(hwc.sizes()));
  // Past any ViT's input: a typo, and 3 x size^2 floats would not fit in memory.
  if (size < 1 || size > 16384) fail("image size must be 1..16384, got {}", size);
  data::ImageTransformOptions t;
  t.size = size;
  t.train = false;
  return data::transform_image(hwc.cpu().contiguous(), t, 0);
}

void bind_transforms(py::module_& m) {
  m.def("caption_defect", &eval::caption_defect, py::arg("text"),
        "why a caption cannot be encoded (empty, only whitespace or invisible characters), else ''");
  m.def("transform_pixels", &transform_pixels, py::arg("pixels"), py::arg("size"),
        py::call_guard<py::gil_scoped_release>());
  m.def(
      "decode_image",
      [](const py::bytes& data, const std::string& name) {
        std::string bytes = data;
        py::gil_scoped_release release;
        return data::decode_image(bytes, name);
      },
      py::arg("data"), py::arg("name"));
  m.def(
      "import_open_clip",
      [](const std::string& weights, const std::string& config, const std::string& run_dir,
         const std::string& llm) {
        train::OpenClipImportOptions o;
        o.weights = weights;
        o.config = config;
        o.run_dir = run_dir;
        o.llm = llm;
        return train::import_open_clip(o).string();
      },
      py::arg("weights"), py::arg("config"), py::arg("run_dir"), py::arg("llm") = "",
      py::call_guard<py::gil_scoped_release>());
}

}  // namespace

void bind_model(py::module_& m) {
  bind_transforms(m);
  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def(py::init(&load_model), py::arg("path"), py::arg("llm") = "", py::arg("dtype") = "bf16",
           py::arg("device") = "cpu", py::arg("batch_size") = 64, py::arg("allow_llm_mismatch") = false,
           py::call_guard<py::gil_scoped_release>())
      .def_readwrite("path", &Model::path)  // what messages name (the export, not its temporary run)
      .def_readonly("has_text", &Model::has_text)
      .def_readonly("sigmoid_loss", &Model::sigmoid_loss)
      .def_property_readonly("is_clip", [](const Model& m) { return m.models->is_clip(); })
      .def_property_readonly("image_size",
                             [](const Model& m) { return m.models->model().image->config().image_size; })
      .def_property_readonly("warnings", [](const Model& m) { return m.models->warnings(); })
      .def_property_readonly(
          "logit_scale",
          [](const Model& m) { return m.models->model().image->logit_scale.detach().cpu().clone(); })
      .def_property_readonly(
          "logit_bias",
          [](const Model& m) { return m.models->model().image->logit_bias.detach().cpu().clone(); })
      .def(
          "text_encoding",
          [](const Model& m, const std::string& prompts) {
            m.require_text();
            return m.models->text_encoding(prompts).dump();
          },
          py::arg("prompts"))
      .def(
          "encode_image",
          [](Model& m, const torch::Tensor& images, bool normalize, bool visual) {
            return m.models->encode_pixels(
                images, visual ? eval::ImageFeatureKind::kVisual : eval::ImageFeatureKind::kJoint, normalize);
          },
          py::arg("images"), py::arg("normalize") = false, py::arg("visual") = false,
          py::call_guard<py::gil_scoped_release>())
      .def(
          "encode_text_facets",
          [](Model& m, const std::vector<std::string>& texts, const std::string& prompts, bool unit_facets) {
            m.require_text();
            torch::NoGradGuard no_grad;
            return m.models->text_features(texts, prompts, nullptr, unit_facets);
          },
          py::arg("texts"), py::arg("prompts") = "raw", py::arg("unit_facets") = true,
          py::call_guard<py::gil_scoped_release>())
      .def(
          "encode_text",
          [](Model& m, const std::vector<std::string>& texts, const std::string& prompts,
             const std::string& pooling, bool normalize) {
            m.require_text();
            torch::NoGradGuard no_grad;
            const eval::FacetPooling p = eval::parse_facet_pooling(pooling, "pooling");
            const torch::Tensor facets =
                m.models->text_features(texts, prompts, nullptr, p == eval::FacetPooling::kMeanCosine);
            // mean_cosine: the mean unit facet, whose dot product with a unit
            // image feature is eval's mean cosine (facet_similarity).
            const torch::Tensor pooled = p == eval::FacetPooling::kMeanCosine
                                             ? facets.mean(1)
                                             : eval::pool_facets(facets, p).select(1, 0);
            return normalize ? eval::l2_normalize(pooled) : pooled;
          },
          py::arg("texts"), py::arg("prompts") = "raw", py::arg("pooling") = "mean_cosine",
          py::arg("normalize") = false, py::call_guard<py::gil_scoped_release>())
      .def(
          "zero_shot_classifier",
          [](Model& m, const std::vector<std::string>& class_names,
             const std::vector<std::string>& templates) {
            m.require_text();
            if (class_names.empty()) fail("zero_shot_classifier needs at least one class name");
            if (templates.empty()) fail("zero_shot_classifier needs at least one template");
            torch::NoGradGuard no_grad;
            return eval::zero_shot_classifier(*m.models, class_names, templates);
          },
          py::arg("class_names"), py::arg("templates"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace flame::python
