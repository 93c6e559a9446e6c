// placeholder until the pipeline lands
namespace picoface {}
