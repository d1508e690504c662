import Foundation
import Testing
import TandemNN
import TandemTestSupport

/// `MultiheadAttention` against `torch.nn.MultiheadAttention` (scripts/make_transformer_golden.py):
/// cross-attention with a key padding mask (batch first), causal self-attention (sequence first);
/// outputs and the gradients of the inputs and every parameter, float64.
@Suite struct MultiheadAttentionTests {
    @Test(arguments: [("cross_padded", true), ("self_causal", false)]) func matchesPyTorch(name: String, batchFirst: Bool) throws {
        let golden = try Golden.load("transformer_ops")
        let p = "mha.\(name)."
        let mha = MultiheadAttention(embedDim: 16, numHeads: 4, batchFirst: batchFirst)
        #expect(mha.namedParameters().map(\.0) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"])
        for (parameterName, parameter) in mha.namedParameters() {
            parameter.value = try golden.tensor(p + "param." + parameterName).requiringGrad()
        }
        let query = try golden.tensor(p + "query").requiringGrad()
        let cross = golden.tensors[p + "key"] != nil
        let key = cross ? try golden.tensor(p + "key").requiringGrad() : query
        let value = cross ? try golden.tensor(p + "value").requiringGrad() : query
        let padding = try golden.tensors[p + "key_padding_mask"].map { try $0.gt(0.5) }
        let out = try mha(query, key, value, keyPaddingMask: padding, isCausal: !cross)
        try out.backward(golden.tensor(p + "upstream"))
        #expect(try golden.mismatch(out, p + "out", rtol: 1e-10, atol: 1e-12) == nil)
        var inputs = [("query", query)]
        if cross { inputs += [("key", key), ("value", value)] }
        for (inputName, t) in inputs { #expect(try golden.mismatch(t.grad, p + "grad_" + inputName, rtol: 1e-10, atol: 1e-12) == nil, "\(inputName)") }
        for (parameterName, parameter) in mha.namedParameters() {
            #expect(try golden.mismatch(parameter.grad, p + "grad." + parameterName, rtol: 1e-10, atol: 1e-12) == nil, "\(parameterName)")
        }
    }

    @Test func wrongShapesAreTypedErrors() {
        let mha = MultiheadAttention(embedDim: 8, numHeads: 2)
        #expect(throws: TensorError.self) { try mha(Tensor.zeros([3, 2, 6])) }
        #expect(throws: TensorError.self) { try mha(Tensor.zeros([3, 2, 8]), Tensor.zeros([4, 2, 8]), Tensor.zeros([4, 2, 8]), keyPaddingMask: Tensor.zeros([2, 3]).gt(0)) }
    }
}
