import { StringDecoder } from 'node:string_decoder';

/** A document longer than `maxLength(head)` allows: `document` holds its head. */
export class DocumentTooLong extends Error {
  constructor(readonly document: TextDocument) {
    super(`document ${document.index} is longer than can be parsed`);
    this.name = 'DocumentTooLong';
  }
}

/** One YAML document of a stream, as text: parsed alone, it costs memory for itself only. */
export interface TextDocument {
  /** 1 for the first document of the file, as `(document N)` in messages counts them. */
  index: number;
  /** The line of the file on which the document's text begins (its `---`, if it has one). */
  firstLine: number;
  /** The document's text (not set on a DocumentTooLong's). */
  text?: string;
  /** The first HEAD_CHARS of the text, to name a document that is too long to parse. */
  head: string;
  /** Length of the text in characters (so far, on a DocumentTooLong's). */
  length: number;
}

const HEAD_CHARS = 64 * 1024;

/** `---` at the start of a line, then a blank or the end of the line: YAML's document marker. */
const MARKER = /^---(?:[ \t\r\n]|$)/;

/**
 * Splits a YAML stream into its documents at each `---` line, as the text arrives, without
 * parsing it. A line that starts with `---` and a blank always starts a document in YAML
 * (no scalar may hold one: YAML 1.2, "c-forbidden"), so the split is exact. A document that
 * grows longer than `maxLength(head)` (its first characters tell what it is) throws
 * DocumentTooLong at once, without reading further. Blank text before the first marker is not
 * a document. `onDocument` gets each document as it ends; what it throws ends the reading.
 */
export async function splitYamlDocuments(chunks: AsyncIterable<string | Buffer>, opts: { maxLength: (head: string) => number }, onDocument: (doc: TextDocument, several: boolean) => void): Promise<void> {
  let count = 0;
  let current = open(1, 1);
  let parts: string[] = [];
  let line = 1;
  /** The first characters of the line being read, until they tell whether it is a marker. */
  let lineHead: string | undefined = '';

  function open(index: number, firstLine: number): TextDocument {
    return { index, firstLine, head: '', length: 0 };
  }

  function append(text: string): void {
    if (text === '') return;
    current.length += text.length;
    if (current.head.length < HEAD_CHARS) current.head += text.slice(0, HEAD_CHARS - current.head.length);
      parts.push(text);
    // Too long to be parsed: stop here, without reading the rest (the file may never end).
    if (current.length > opts.maxLength(current.head)) throw new DocumentTooLong(current);
  }

  /** Hands the document on, and keeps nothing of it. `several`: the file has more than one document. */
  function close(atMarker: boolean): void {
    current.text = parts.join('');
    parts = [];
    // Only comments and blanks before the first marker: not a document of its own.
    const blank = count === 0 && current.length < HEAD_CHARS && /^(?:\s|#.*)*$/.test(current.head);
    if (!blank) {
      count++;
      onDocument(current, count > 1 || atMarker);
    }
  }

  /** Text of one line (or of its start or rest): the line's first characters decide where it goes. */
  function take(text: string, lineEnds: boolean): void {
    if (lineHead === undefined) return append(text);
    lineHead += text;
    if (lineHead.length < 4 && !lineEnds) return;
    const held = lineHead;
    lineHead = undefined;
    if (MARKER.test(held)) {
      // A document that ends at a marker has another after it: a file of several documents.
      close(true);
      current = open(count + 1, line);
    }
    append(held);
  }

  function feed(text: string): void {
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) {
        take(text.slice(start), false);
        return;
      }
      take(text.slice(start, nl + 1), true);
      line++;
      lineHead = '';
      start = nl + 1;
    }
  }

  const decoder = new StringDecoder('utf8');
  let first = true;
  for await (const chunk of chunks) {
    let text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
    if (first && text !== '') {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      first = false;
    }
    feed(text);
  }
  feed(decoder.end());
  // A short last line without a newline: `---` alone there still starts an (empty) document.
  if (lineHead) take('', true);
  close(false);
}
