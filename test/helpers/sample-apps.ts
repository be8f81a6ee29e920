/** Small apps with no third-party dependencies, one per language, each answering GET / on $PORT. */
export const PYTHON_APP = {
  "requirements.txt": "# standard library only\n",
  "app.py": `import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"python says hi from {sys.prefix}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("listening on", os.environ["PORT"])
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`,
};

export const GO_APP = {
  "go.mod": "module example.com/goweb\n\ngo 1.19\n",
  "main.go": `package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "go says hi") })
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
`,
};

export const RUST_APP = {
  "Cargo.toml": '[package]\nname = "rustweb"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n',
  "src/main.rs": `use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let port: u16 = std::env::var("PORT").expect("PORT").parse().expect("PORT is a number");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let body = "rust says hi\\n";
        let _ = write!(s, "HTTP/1.1 200 OK\\r\\nContent-Length: {}\\r\\nConnection: close\\r\\n\\r\\n{}", body.len(), body);
    }
}
`,
};

