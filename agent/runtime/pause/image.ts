import { pauseBinaries } from './binaries.js';

// The pod infrastructure image holds a pod's shared namespaces. Devices often cannot reach a
// registry, so the agent carries the (tiny, static) pause binary itself and imports the image from
// a tar built here in memory. The agent ships as a single bundled file, hence no tar dependency.

export const PAUSE_IMAGE = 'flotilla/pause:1';

/** Image config for the import (`changes` of POST /images/create): the tar alone carries none. */
export const PAUSE_IMAGE_CHANGES: readonly string[] = ['ENTRYPOINT ["/pause"]'];

export interface TarFile {
  name: string;
  data: Buffer;
  mode: number;
}

const BLOCK = 512;
// A fixed timestamp keeps the archive, and so the imported layer's digest, identical on every
// device and every run.
const MTIME = 0;

function writeString(buf: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > length) throw new Error(`tar field too long: ${value}`);
  bytes.copy(buf, offset);
}

/** Octal number, zero-padded to fill the field except its terminating NUL. */
function writeOctal(buf: Buffer, offset: number, length: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new Error(`tar numeric field overflow: ${value}`);
  writeString(buf, offset, length, `${digits.padStart(length - 1, '0')}\0`);
}

function header(file: TarFile): Buffer {
  const h = Buffer.alloc(BLOCK);
  const name = file.name.replace(/^\/+/, '');
  if (name.length === 0 || Buffer.byteLength(name) > 100) throw new Error(`unsupported tar entry name: ${file.name}`);
  writeString(h, 0, 100, name);
  writeOctal(h, 100, 8, file.mode & 0o7777);
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, file.data.length);
  writeOctal(h, 136, 12, MTIME);
  h.fill(0x20, 148, 156); // checksum is computed over the header with its own field as spaces
  writeString(h, 156, 1, '0'); // regular file
  writeString(h, 257, 6, 'ustar\0');
  writeString(h, 263, 2, '00');
  writeString(h, 265, 32, 'root');
  writeString(h, 297, 32, 'root');
  writeOctal(h, 329, 8, 0); // devmajor
  writeOctal(h, 337, 8, 0); // devminor
  let sum = 0;
  for (const byte of h) sum += byte;
  // Conventional layout: six octal digits, NUL, space.
  writeString(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

/** A minimal POSIX ustar archive of regular files (names up to 100 bytes). */
export function tarArchive(files: readonly TarFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    parts.push(header(file), file.data);
    const pad = (BLOCK - (file.data.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(2 * BLOCK)); // end-of-archive marker
  return Buffer.concat(parts);
}

/** Maps node's process.arch to Docker's platform architecture names. */
function dockerArch(arch: string): 'amd64' | 'arm64' | undefined {
  if (arch === 'x64' || arch === 'amd64') return 'amd64';
  if (arch === 'arm64' || arch === 'aarch64') return 'arm64';
  return undefined;
}

/**
 * The pause image's root file system (just `/pause`, mode 0755) as a tar ready for importImage, or
 * undefined when no binary was built for this architecture.
 */
export function pauseImageTar(arch: string): Buffer | undefined {
  const key = dockerArch(arch);
  const encoded = key ? pauseBinaries[key] : undefined;
  if (!encoded) return undefined;
  return tarArchive([{ name: '/pause', data: Buffer.from(encoded, 'base64'), mode: 0o755 }]);
}
