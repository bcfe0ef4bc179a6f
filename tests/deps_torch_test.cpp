// deps_torch_test.cpp: the build links libtorch from the pinned torch wheel (the same version as the GPU
// machine, so TorchScript files and the C++ API agree) and it computes.
#include <ATen/ATen.h>
#include <torch/version.h>

#include <cstdio>
#include <cstring>

int main() {
  int failed = 0, passed = 0;
  auto check = [&](bool ok, const char *what) {
    ok ? passed++ : failed++;
    if (!ok) std::fprintf(stderr, "deps_torch_test: %s\n", what);
  };
  check(std::strcmp(TORCH_VERSION, RSD_EXPECTED_TORCH) == 0, "torch headers are not the pinned version");
  at::Tensor a = at::arange(6, at::kFloat).reshape({2, 3});
  at::Tensor b = at::ones({3, 2}, at::kFloat);
  at::Tensor c = at::matmul(a, b);  // rows: 0+1+2, 3+4+5
  check(c.size(0) == 2 && c.size(1) == 2, "matmul shape");
  check(c[0][0].item<float>() == 3.0f && c[1][1].item<float>() == 12.0f, "matmul values");
  std::printf("deps_torch_test: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
