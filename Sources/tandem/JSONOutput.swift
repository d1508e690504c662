import Foundation
import TandemTrain

/// Prints `object` as one line of JSON with sorted keys: the `--json` output of the commands.
/// Non-finite numbers print as null (JSON has no NaN).
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: JSONValues.finite(object), options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
