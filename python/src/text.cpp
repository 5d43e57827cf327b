// The frozen LLM and the FLAME text side from Python: LLM (weights +
// tokenizer, loaded once), TextEncoder (text::FacetEncoder: the prompt set's K
// facets, FDA, the layer; what `flame embed` stores), Tokenizer.
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "llm/load_llm.h"
#include "llm/tokenizer.h"
#include "text/fda_encoder.h"
#include "text/prompts.h"
#include "util/error.h"

namespace flame::python {

namespace {

struct Llm {
  std::string path, dtype, device;
  llm::Transformer model;
  std::shared_ptr<llm::Tokenizer> tokenizer;  // shared with Python's llm.tokenizer
};

// A FacetEncoder and the LLM it reads (kept alive with it).
struct TextEncoder {
  std::shared_ptr<Llm> llm;
  text::FacetEncoder encoder;
};

// Decoded token bytes may end inside a UTF-8 sequence: U+FFFD, as Hugging Face.
py::str utf8_or_replace(const std::string& s) {
  PyObject* text = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

void bind_tokenizer(py::module_& m) {
  py::class_<llm::Tokenizer, std::shared_ptr<llm::Tokenizer>>(m, "Tokenizer")
      .def(py::init([](const std::string& path) {
             return std::shared_ptr<llm::Tokenizer>(llm::Tokenizer::load(path));
           }),
           py::arg("path"))
      .def(
          "encode",
          [](const llm::Tokenizer& t, const std::string& text, bool add_special_tokens) {
            return t.encode(text, add_special_tokens);
          },
          py::arg("text"), py::arg("add_special_tokens") = true, py::call_guard<py::gil_scoped_release>())
      .def(
          "decode",
          [](const llm::Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special_tokens) {
            std::string text;
            {
              py::gil_scoped_release release;
              text = t.decode(ids, skip_special_tokens);
            }
            return utf8_or_replace(text);
          },
          py::arg("ids"), py::arg("skip_special_tokens") = false)
      .def("id_to_piece", [](const llm::Tokenizer& t, int32_t id) { return py::bytes(t.id_to_piece(id)); })
      .def_property_readonly("vocab_size", &llm::Tokenizer::vocab_size)
      .def_property_readonly("bos_token_id", &llm::Tokenizer::bos_id)
      .def_property_readonly("eos_token_id", &llm::Tokenizer::eos_id)
      .def_property_readonly("description", &llm::Tokenizer::description);
}

void bind_llm(py::module_& m) {
  py::class_<Llm, std::shared_ptr<Llm>>(m, "LLM")
      .def(py::init([](const std::string& path, const std::string& dtype, const std::string& device) {
             py::gil_scoped_release release;
             llm::LoadedLlm loaded = llm::load_llm(path, dtype, device);
             return std::make_shared<Llm>(
                 Llm{path, dtype, device, std::move(loaded.model), std::move(loaded.tokenizer)});
           }),
           py::arg("path"), py::arg("dtype") = "bf16", py::arg("device") = "cpu")
      .def_readonly("path", &Llm::path)
      .def_readonly("dtype", &Llm::dtype)
      .def_readonly("device", &Llm::device)
      .def_property_readonly("hidden_size", [](const Llm& l) { return l.model.config().hidden_size; })
      .def_property_readonly("num_layers", [](const Llm& l) { return l.model.num_layers(); })
      .def_readonly("tokenizer", &Llm::tokenizer);
}

void bind_text_encoder(py::module_& m) {
  py::class_<TextEncoder, std::shared_ptr<TextEncoder>>(m, "TextEncoder")
      .def(py::init([](std::shared_ptr<Llm> llm, const std::string& prompts, int64_t layer,
                       const std::string& mode, const std::string& facet_positions, int64_t batch_tokens,
                       int64_t max_tokens, bool normalize) {
             if (!llm) throw Error("TextEncoder needs an LLM, got None");
             text::FacetEncoderOptions o;
             o.mode = text::parse_encode_mode(mode);
             o.layer = layer;
             o.batch_tokens = batch_tokens;
             o.max_tokens = max_tokens;
             o.normalize = normalize;
             o.facet_positions = llm::parse_facet_positions(facet_positions, "facet_positions");
             text::PromptSet set = text::load_prompt_set(prompts);
             text::FacetEncoder encoder(llm->model, *llm->tokenizer, std::move(set), o);
             return std::make_shared<TextEncoder>(TextEncoder{std::move(llm), std::move(encoder)});
           }),
           py::arg("llm"), py::arg("prompts") = "long", py::arg("layer") = -2, py::arg("mode") = "fda",
           py::arg("facet_positions") = "separate", py::arg("batch_tokens") = 8192, py::arg("max_tokens") = 0,
           py::arg("normalize") = false)
      .def(
          "encode",
          [](const TextEncoder& e, const std::vector<std::string>& texts) {
            torch::NoGradGuard no_grad;
            text::EncodeStats stats;
            torch::Tensor embeddings = e.encoder.encode_texts(texts, &stats);
            return std::make_pair(embeddings, stats.truncated);  // Python warns with the count
          },
          py::arg("texts"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("llm", [](const TextEncoder& e) { return e.llm; })
      .def_property_readonly("prompt_set", [](const TextEncoder& e) { return e.encoder.prompts().name; })
      .def_property_readonly("facets",
                             [](const TextEncoder& e) {
                               std::vector<std::string> names;
                               for (const auto& f : e.encoder.prompts().facets) names.push_back(f.name);
                               return names;
                             })
      .def_property_readonly("num_facets",
                             [](const TextEncoder& e) { return e.encoder.facet_tokens().size(); })
      .def_property_readonly("dim", [](const TextEncoder& e) { return e.encoder.dim(); })
      .def_property_readonly("layer", [](const TextEncoder& e) { return e.encoder.layer(); })
      .def_property_readonly("max_tokens", [](const TextEncoder& e) { return e.encoder.max_tokens(); })
      .def_property_readonly("mode",
                             [](const TextEncoder& e) { return text::to_string(e.encoder.options().mode); })
      .def_property_readonly("facet_positions", [](const TextEncoder& e) {
        return llm::to_string(e.encoder.options().facet_positions);
      });
}

}  // namespace

void bind_text(py::module_& m) {
  bind_tokenizer(m);
  bind_llm(m);
  bind_text_encoder(m);
}

}  // namespace flame::python
