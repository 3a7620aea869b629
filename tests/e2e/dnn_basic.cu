// cuDNN 9 through vgpu (libcudnn.so.9 and the sub-libraries it loads), without running a cuDNN
// kernel (the emu backend has no CPU versions of them):
//   - versions (cudnnGetVersion against the header's, the cudart version it reports);
//   - cudnnCreate (loads cuDNN's kernel modules, asks occupancy and cluster occupancy of them,
//     creates its internal streams and buffers), cudnnSetStream/cudnnGetStream with a stream
//     of ours and the default stream, cudnnDestroy, and a second create/destroy cycle;
//   - tensor and filter descriptors (host-side state of the handle's library) and an error
//     cuDNN reports itself.
// One PASS/FAIL line per check (check.h), then a summary; exit 0 only if all passed.
#include <cuda_runtime.h>
#include <cudnn.h>

#include "check.h"

#define DNN_OK(name, call)                                                                        \
    do {                                                                                          \
        cudnnStatus_t st_ = (call);                                                               \
        check(st_ == CUDNN_STATUS_SUCCESS, (name), "%s (%d)", cudnnGetErrorString(st_), (int)st_); \
    } while (0)

static void test_versions(void)
{
    size_t v = cudnnGetVersion();
    check(v / 10000 == CUDNN_MAJOR, "dnn.version_major", "%zu (header %d)", v, CUDNN_VERSION);
    int major = -1;
    DNN_OK("dnn.get_property", cudnnGetProperty(MAJOR_VERSION, &major));
    check(major == CUDNN_MAJOR, "dnn.property_major", "%d", major);
    size_t rt = cudnnGetCudartVersion();
    check(rt >= 13000, "dnn.cudart_version", "%zu", rt);
}

static void test_handle(const char *label)
{
    check_label = label;
    cudnnHandle_t h = nullptr;
    cudnnStatus_t st = cudnnCreate(&h);
    check(st == CUDNN_STATUS_SUCCESS && h, "create", "%s (%d)", cudnnGetErrorString(st), (int)st);
    if (st != CUDNN_STATUS_SUCCESS) {
        check_label = "";
        return;
    }

    cudaStream_t s = nullptr, got = (cudaStream_t)1;
    cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    check(e == cudaSuccess, "stream_create", "%s", cudaGetErrorName(e));
    DNN_OK("get_default_stream", cudnnGetStream(h, &got));
    check(got == nullptr, "default_stream_is_null", "%p", (void *)got);
    DNN_OK("set_stream", cudnnSetStream(h, s));
    DNN_OK("get_stream", cudnnGetStream(h, &got));
    check(got == s, "stream_round_trip", "%p != %p", (void *)got, (void *)s);
    DNN_OK("set_default_stream", cudnnSetStream(h, nullptr));
    DNN_OK("get_stream_again", cudnnGetStream(h, &got));
    check(got == nullptr, "default_stream_round_trip", "%p", (void *)got);

    cudnnTensorDescriptor_t t = nullptr;
    DNN_OK("tensor_create", cudnnCreateTensorDescriptor(&t));
    DNN_OK("tensor_set", cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 3, 17, 19));
    cudnnDataType_t dt;
    int n, c, hh, w, ns, cs, hs, ws;
    DNN_OK("tensor_get", cudnnGetTensor4dDescriptor(t, &dt, &n, &c, &hh, &w, &ns, &cs, &hs, &ws));
    check(dt == CUDNN_DATA_FLOAT && n == 2 && c == 3 && hh == 17 && w == 19 && ws == 1 && hs == 19 &&
              cs == 17 * 19 && ns == 3 * 17 * 19,
          "tensor_round_trip", "%d %d %d %d strides %d %d %d %d", n, c, hh, w, ns, cs, hs, ws);
    size_t bytes = 0;
    DNN_OK("tensor_size", cudnnGetTensorSizeInBytes(t, &bytes));
    check(bytes == 2 * 3 * 17 * 19 * sizeof(float), "tensor_size_value", "%zu", bytes);
    st = cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 0, 3, 17, 19);
    check(st == CUDNN_STATUS_BAD_PARAM, "tensor_bad_param", "%s", cudnnGetErrorString(st));
    DNN_OK("tensor_destroy", cudnnDestroyTensorDescriptor(t));

    cudnnFilterDescriptor_t f = nullptr;
    DNN_OK("filter_create", cudnnCreateFilterDescriptor(&f));
    DNN_OK("filter_set", cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 8, 3, 3, 3));
    DNN_OK("filter_destroy", cudnnDestroyFilterDescriptor(f));

    DNN_OK("destroy", cudnnDestroy(h));
    e = cudaStreamDestroy(s);
    check(e == cudaSuccess, "stream_destroy", "%s", cudaGetErrorName(e));
    check_label = "";
}

int main(void)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    test_versions();
    test_handle("dnn");
    test_handle("dnn_again");
    cudaError_t e = cudaDeviceSynchronize();
    check(e == cudaSuccess, "dnn.device_synchronize", "%s", cudaGetErrorName(e));
    return check_summary("dnn_basic");
}
