import Foundation

/// Prints `object` as one line of JSON with sorted keys: the `--json` output of the commands.
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
