// libsquish_onnx.so: the only code that touches libonnx / libprotobuf (see export/onnx_graph.h for
// why it is a separately loaded module). Converts squish's plain OnnxModel to onnx::ModelProto
// and back, and runs onnx::checker.
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <exception>
#include <fstream>
#include <unordered_map>

#include "export/onnx_graph.h"

namespace {

using squish::OnnxModel;

void to_value_info(const squish::OnnxValueInfo& v, onnx::ValueInfoProto* p) {
  p->set_name(v.name);
  onnx::TypeProto_Tensor* t = p->mutable_type()->mutable_tensor_type();
  t->set_elem_type(static_cast<int32_t>(v.type));
  for (const std::string& d : v.dims) {
    onnx::TensorShapeProto_Dimension* dim = t->mutable_shape()->add_dim();
    if (!d.empty() && d[0] >= '0' && d[0] <= '9') {
      dim->set_dim_value(std::stoll(d));
    } else {
      dim->set_dim_param(d);
    }
  }
}

squish::OnnxValueInfo from_value_info(const onnx::ValueInfoProto& p) {
  squish::OnnxValueInfo v;
  v.name = p.name();
  v.type = static_cast<squish::OnnxType>(p.type().tensor_type().elem_type());
  for (const auto& d : p.type().tensor_type().shape().dim()) {
    v.dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : d.dim_param());
  }
  return v;
}

void to_proto(const OnnxModel& m, onnx::ModelProto* proto) {
  proto->set_ir_version(m.ir_version);
  proto->set_producer_name(m.producer);
  proto->set_producer_version(m.producer_version);
  proto->set_model_version(1);
  for (const auto& [domain, version] : m.opsets) {
    onnx::OperatorSetIdProto* o = proto->add_opset_import();
    o->set_domain(domain);
    o->set_version(version);
  }
  onnx::GraphProto* g = proto->mutable_graph();
  g->set_name(m.graph_name);
  for (const auto& v : m.inputs) to_value_info(v, g->add_input());
  for (const auto& v : m.outputs) to_value_info(v, g->add_output());
  for (const squish::OnnxNode& n : m.nodes) {
    onnx::NodeProto* p = g->add_node();
    p->set_op_type(n.op);
    p->set_name(n.name);
    if (!n.domain.empty()) p->set_domain(n.domain);
    for (const std::string& s : n.inputs) p->add_input(s);
    for (const std::string& s : n.outputs) p->add_output(s);
    for (const squish::OnnxAttribute& a : n.attributes) {
      onnx::AttributeProto* ap = p->add_attribute();
      ap->set_name(a.name);
      switch (a.kind) {
        case squish::OnnxAttribute::Kind::Int:
          ap->set_type(onnx::AttributeProto_AttributeType_INT);
          ap->set_i(a.i);
          break;
        case squish::OnnxAttribute::Kind::Float:
          ap->set_type(onnx::AttributeProto_AttributeType_FLOAT);
          ap->set_f(a.f);
          break;
        case squish::OnnxAttribute::Kind::Ints:
          ap->set_type(onnx::AttributeProto_AttributeType_INTS);
          for (int64_t x : a.ints) ap->add_ints(x);
          break;
      }
    }
  }
  for (const squish::OnnxInitializer& t : m.initializers) {
    onnx::TensorProto* p = g->add_initializer();
    p->set_name(t.name);
    p->set_data_type(static_cast<int32_t>(t.type));
    for (int64_t d : t.dims) p->add_dims(d);
    if (!t.external) {
      p->set_raw_data(t.raw);
      continue;
    }
    p->set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"location", m.data_file},
                                     {"offset", std::to_string(t.offset)},
                                     {"length", std::to_string(t.length)}}) {
      onnx::StringStringEntryProto* e = p->add_external_data();
      e->set_key(key);
      e->set_value(value);
    }
  }
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int squish_onnx_serialize(
    const OnnxModel* model, const std::string* model_dir, std::string* bytes, std::string* error) {
  try {
    onnx::ModelProto proto;
    to_proto(*model, &proto);
    // check_model(ModelProto) knows no folder for external data; the graph check with the
    // model's folder set is the same check plus the external files' presence.
    onnx::checker::CheckerContext ctx;
    ctx.set_ir_version(static_cast<int>(proto.ir_version()));
    std::unordered_map<std::string, int> opsets;
    for (const auto& o : proto.opset_import()) opsets[o.domain()] = static_cast<int>(o.version());
    ctx.set_opset_imports(opsets);
    ctx.set_model_dir(*model_dir);
    onnx::checker::LexicalScopeContext lex;
    onnx::checker::check_graph(proto.graph(), ctx, lex);
    if (!proto.SerializeToString(bytes)) {
      *error = "the model does not serialize (over 2 GB? use external data)";
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    *error = e.what();
    return 1;
  }
}

extern "C" __attribute__((visibility("default"))) int squish_onnx_read(const std::string* path,
                                                                       OnnxModel* model,
                                                                       std::string* error) {
  try {
    onnx::checker::check_model(*path);
    onnx::ModelProto proto;
    std::ifstream in(*path, std::ios::binary);
    if (!in || !proto.ParseFromIstream(&in)) {
      *error = "not an ONNX model";
      return 1;
    }
    model->ir_version = proto.ir_version();
    for (const auto& o : proto.opset_import()) model->opsets.push_back({o.domain(), o.version()});
    model->producer = proto.producer_name();
    model->graph_name = proto.graph().name();
    for (const auto& v : proto.graph().input()) model->inputs.push_back(from_value_info(v));
    for (const auto& v : proto.graph().output()) model->outputs.push_back(from_value_info(v));
    for (const auto& n : proto.graph().node()) {
      squish::OnnxNode node;
      node.op = n.op_type();
      node.domain = n.domain();
      node.name = n.name();
      node.inputs.assign(n.input().begin(), n.input().end());
      node.outputs.assign(n.output().begin(), n.output().end());
      for (const auto& a : n.attribute()) {
        squish::OnnxAttribute attr;
        attr.name = a.name();
        attr.i = a.i();
        attr.f = a.f();
        attr.ints.assign(a.ints().begin(), a.ints().end());
        attr.kind = a.type() == onnx::AttributeProto_AttributeType_FLOAT
                        ? squish::OnnxAttribute::Kind::Float
                    : a.type() == onnx::AttributeProto_AttributeType_INTS
                        ? squish::OnnxAttribute::Kind::Ints
                        : squish::OnnxAttribute::Kind::Int;
        node.attributes.push_back(std::move(attr));
      }
      model->nodes.push_back(std::move(node));
    }
    for (const auto& t : proto.graph().initializer()) {
      squish::OnnxInitializer init;
      init.name = t.name();
      init.type = static_cast<squish::OnnxType>(t.data_type());
      init.dims.assign(t.dims().begin(), t.dims().end());
      init.external = t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL;
      for (const auto& e : t.external_data()) {
        if (e.key() == "location") model->data_file = e.value();
        if (e.key() == "offset") init.offset = std::stoull(e.value());
        if (e.key() == "length") init.length = std::stoull(e.value());
      }
      if (!init.external) init.length = t.raw_data().size();
      model->initializers.push_back(std::move(init));
    }
    return 0;
  } catch (const std::exception& e) {
    *error = e.what();
    return 1;
  }
}
