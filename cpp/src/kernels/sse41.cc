#include "isa_fill.h"

namespace picoface {

void fill_sse41(KernelTable* /*table*/) {}

}  // namespace picoface
