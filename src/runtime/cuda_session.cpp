#include "runtime/cuda_session.h"

#include "core/error.h"

namespace squish {

namespace {
Device g_default_device = Device::Cpu;
bool g_default_is_auto = false;
}  // namespace

const char* device_name(Device d) {
  switch (d) {
    case Device::Cpu:
      return "cpu";
    case Device::Cuda:
      return "cuda";
    default:
      return "default";
  }
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "auto") return cuda_available() ? Device::Cuda : Device::Cpu;
  if (name == "cuda") {
    if (!cuda_built())
      fail("--device cuda: squish was built without CUDA (cmake -DSQUISH_CUDA=ON)");
    if (!cuda_available()) fail("--device cuda: no usable CUDA device (driver or GPU missing)");
    return Device::Cuda;
  }
  fail("--device {}: expected cpu, cuda or auto", name);
}

void set_default_device(Device d) {
  g_default_device = d == Device::Default ? Device::Cpu : d;
}
Device default_device() {
  return g_default_device;
}
void select_device(const std::string& name) {
  set_default_device(parse_device(name));
  g_default_is_auto = name == "auto";
}
bool default_device_is_auto() {
  return g_default_is_auto;
}

#ifndef SQUISH_CUDA
// CPU-only build: the CUDA entry points exist so callers need no #ifdefs.
bool cuda_built() {
  return false;
}
bool cuda_available() {
  return false;
}
std::unique_ptr<DeviceSession> make_cuda_session(const Model&, int, int) {
  fail("squish was built without CUDA (cmake -DSQUISH_CUDA=ON)");
}
CudaBandwidth measure_cuda_bandwidth(size_t, int) {
  fail("squish was built without CUDA (cmake -DSQUISH_CUDA=ON)");
}
#else
bool cuda_built() {
  return true;
}
#endif

}  // namespace squish
