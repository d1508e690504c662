extension Tensor {
    /// An identity for a leaf that requires grad (stable across copies of the tensor value);
    /// nil for tensors that do not require grad or are not leaves.
    public var leafID: ObjectIdentifier? {
        guard let node = gradNode, node.isLeaf else { return nil }
        return ObjectIdentifier(node)
    }

    /// The `leafID`s of every leaf that this tensor's graph reaches (what a backward pass
    /// from it would give a gradient). DDP uses it to find unused parameters.
    public func reachableLeafIDs() -> Set<ObjectIdentifier> {
        guard let root = gradNode else { return [] }
        var seen: Set<ObjectIdentifier> = [ObjectIdentifier(root)]
        var leaves: Set<ObjectIdentifier> = []
        var stack = [root]
        while let node = stack.popLast() {
            if node.isLeaf { leaves.insert(ObjectIdentifier(node)) }
            for case let input? in node.inputs where seen.insert(ObjectIdentifier(input)).inserted {
                stack.append(input)
            }
        }
        return leaves
    }
}
