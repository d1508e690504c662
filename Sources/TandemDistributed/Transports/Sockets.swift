import Foundation
import Glibc

/// Thin POSIX socket helpers for the TCP store. Every blocking call takes a deadline.
enum Sockets {
    struct Failure: Error {
        var message: String
        var code: Int32
    }

    static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    static func resolve(_ host: String, port: Int) throws -> sockaddr_in {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let info = result, let sa = info.pointee.ai_addr else {
            throw Failure(message: "cannot resolve host '\(host)': \(String(cString: gai_strerror(rc)))", code: -1)
        }
        defer { freeaddrinfo(result) }
        return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
    }

    /// Whether `host` resolves to an address in 127.0.0.0/8 (a machine's own name often does,
    /// through /etc/hosts, while other machines resolve it to a routable address).
    static func resolvesToLoopback(_ host: String) -> Bool {
        guard let address = try? resolve(host, port: 0) else { return false }
        return UInt32(bigEndian: address.sin_addr.s_addr) >> 24 == 127
    }

    /// A listening socket on `host:port` (port 0: any free port). Returns the fd and the port.
    static func listen(host: String, port: Int) throws -> (fd: Int32, port: Int) {
        var addr = try resolve(host, port: port)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(message: "socket: \(errorText())", code: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            let code = errno
            close(fd)
            throw Failure(message: "bind \(host):\(port): \(errorText(code))", code: code)
        }
        guard Glibc.listen(fd, 1024) == 0 else {
            let code = errno
            close(fd)
            throw Failure(message: "listen: \(errorText(code))", code: code)
        }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, Int(UInt16(bigEndian: bound.sin_port)))
    }

    /// Connects once, waiting at most until `deadline`.
    static func connect(host: String, port: Int, deadline: ContinuousClock.Instant) throws -> Int32 {
        var addr = try resolve(host, port: port)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw Failure(message: "socket: \(errorText())", code: errno) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 && errno != EINPROGRESS {
            let code = errno
            close(fd)
            throw Failure(message: errorText(code), code: code)
        }
        if rc != 0 {
            guard try wait(fd, events: Int16(POLLOUT), deadline: deadline) else {
                close(fd)
                throw Failure(message: "connection timed out", code: ETIMEDOUT)
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                close(fd)
                throw Failure(message: errorText(err), code: err)
            }
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Waits until `fd` is ready for `events`; false on timeout. Throws on poll errors.
    static func wait(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant) throws -> Bool {
        while true {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let ms = Int32(clamping: min(remaining.milliseconds, 1000))
            let rc = poll(&p, 1, ms)
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { throw Failure(message: "poll: \(errorText())", code: errno) }
        }
    }

    /// Sends every byte; throws on error or timeout.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var sent = 0
        try bytes.withUnsafeBytes { raw in
            while sent < raw.count {
                let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                if n > 0 { sent += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    guard try wait(fd, events: Int16(POLLOUT), deadline: deadline) else {
                        throw Failure(message: "send timed out", code: ETIMEDOUT)
                    }
                    continue
                }
                throw Failure(message: n == 0 ? "connection closed" : errorText(), code: n == 0 ? ECONNRESET : errno)
            }
        }
    }

    /// Receives exactly `count` bytes; throws on error, a closed connection or timeout.
    static func recvExactly(_ fd: Int32, _ count: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        try out.withUnsafeMutableBytes { raw in
            while got < count {
                let n = recv(fd, raw.baseAddress! + got, count - got, Int32(MSG_DONTWAIT))
                if n > 0 { got += n; continue }
                if n == 0 { throw Failure(message: "connection closed by the peer", code: ECONNRESET) }
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                    guard try wait(fd, events: Int16(POLLIN), deadline: deadline) else {
                        throw Failure(message: "receive timed out", code: ETIMEDOUT)
                    }
                    continue
                }
                throw Failure(message: errorText(), code: errno)
            }
        }
        return out
    }

    /// Reads whatever is available without blocking (empty: nothing; nil: closed or error).
    static func recvAvailable(_ fd: Int32) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 { return Array(buf[0..<n]) }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return [] }
        return nil
    }

    /// Polls `fds` for input; returns the revents per fd.
    static func pollInput(_ fds: [Int32], timeoutMs: Int32) -> [Int16] {
        var p = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let rc = poll(&p, nfds_t(p.count), timeoutMs)
        if rc <= 0 { return Array(repeating: 0, count: fds.count) }
        return p.map(\.revents)
    }

    static func accept(_ fd: Int32) -> Int32? {
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else { return nil }
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        _ = fcntl(c, F_SETFL, O_NONBLOCK)
        var one: Int32 = 1
        setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return c
    }

    /// The local IPv4 address this machine would use to reach `host` (a UDP "connect" sends
    /// nothing); nil if there is no route.
    static func localAddress(routingTo host: String, port: Int) -> String? {
        guard var addr = try? resolve(host, port: port) else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { return nil }
        var local = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        guard ok == 0 else { return nil }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &local.sin_addr, &text, socklen_t(text.count)) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
