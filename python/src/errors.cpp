// flame's exceptions as Python exceptions, messages unchanged. flame::Error is
// bad input or a failed operation (a wrong value, file or tensor): a ValueError
// subclass, flame.Error, so `except ValueError` and `except flame.Error` both
// catch it. Out of memory is MemoryError (pybind11's default for bad_alloc);
// any other C++ exception is a RuntimeError. None aborts the interpreter.
#include <cerrno>
#include <filesystem>

#include "bindings.h"
#include "util/error.h"

namespace flame::python {

void bind_errors(py::module_& m) {
  static py::handle error = py::exception<Error>(m, "Error", PyExc_ValueError).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    } catch (const std::filesystem::filesystem_error& e) {
      const int code = e.code().value();
      PyObject* type = code == ENOENT   ? PyExc_FileNotFoundError
                       : code == EACCES ? PyExc_PermissionError
                                        : PyExc_OSError;
      PyErr_SetString(type, e.what());
    }
  });
}

}  // namespace flame::python
