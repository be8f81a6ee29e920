/**
 * A parser for server-sent events (WHATWG HTML, "9.2.6 Interpreting an event stream"), the part deck
 * uses: `event:` and `data:` fields, comment lines, a blank line ending each event. Lines may end in
 * CRLF, LF or CR, and a chunk may stop anywhere, even between the CR and LF of one line ending.
 */

export interface ServerEvent { event: string; data: string }

/** Returns a function to feed text chunks to; each complete event goes to `onEvent`. */
export function parseEventStream(onEvent: (e: ServerEvent) => void): (chunk: string) => void {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  let skipLeadingLf = false;

  function takeLine(line: string): void {
    if (line === "") {
      // An event with no data is dropped, as the spec says.
      if (data.length) onEvent({ event: event || "message", data: data.join("\n") });
      event = "";
      data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }

  return (chunk) => {
    buffer += chunk;
    if (skipLeadingLf && buffer.startsWith("\n")) buffer = buffer.slice(1);
    skipLeadingLf = false;
    for (;;) {
      const end = buffer.search(/[\r\n]/);
      if (end === -1) return;
      takeLine(buffer.slice(0, end));
      if (buffer[end] === "\r") {
        if (end + 1 === buffer.length) {
          buffer = "";
          skipLeadingLf = true;
          return;
        }
        buffer = buffer.slice(buffer[end + 1] === "\n" ? end + 2 : end + 1);
      } else {
        buffer = buffer.slice(end + 1);
      }
    }
  };
}
