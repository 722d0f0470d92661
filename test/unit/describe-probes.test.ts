import { describe, expect, it } from 'vitest';
import { probeText } from '../../hub/cli/describe.js';

// `flotilla describe pod` shows each probe in one line, as kubectl does.

const timing = { initialDelaySeconds: 5, periodSeconds: 1, timeoutSeconds: 2, successThreshold: 1, failureThreshold: 3 };

describe('probeText', () => {
  it('shows each handler with its timing', () => {
    expect(probeText({ ...timing, exec: { command: ['cat', '/tmp/healthy'] } })).toBe('exec [cat /tmp/healthy] delay=5s timeout=2s period=1s #success=1 #failure=3');
    expect(probeText({ ...timing, httpGet: { path: '/healthz', port: 8080 } })).toBe('http-get http://:8080/healthz delay=5s timeout=2s period=1s #success=1 #failure=3');
    expect(probeText({ ...timing, httpGet: { port: 'web', scheme: 'HTTPS', host: '127.0.0.1' } })).toBe('http-get https://127.0.0.1:web/ delay=5s timeout=2s period=1s #success=1 #failure=3');
    expect(probeText({ ...timing, tcpSocket: { port: 5432 } })).toBe('tcp-socket :5432 delay=5s timeout=2s period=1s #success=1 #failure=3');
  });
});
