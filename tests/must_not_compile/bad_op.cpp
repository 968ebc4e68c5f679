// Something that is not an op: submit must reject it, naming operation.
#include <i2o2/i2o2.hpp>

struct not_an_op {
  int fd = 0;
};

void send(i2o2::handle& handle) { (void)handle.submit(not_an_op{}); }
