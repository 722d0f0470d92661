/*
 * Pod infrastructure ("pause") process for Flotilla pods.
 *
 * Its only jobs are to hold the pod's namespaces open and to behave as a well-mannered PID 1:
 *   - PID 1 of a PID namespace gets no default signal actions, so without handlers SIGTERM
 *     would be silently dropped and `docker stop` would always wait out its timeout before
 *     resorting to SIGKILL. We therefore exit(0) on SIGTERM and SIGINT.
 *   - Orphans in the pod are re-parented to PID 1; we reap them on SIGCHLD so they never
 *     linger as zombies.
 *
 * It is built without libc (-nostdlib -static) so the image is one file of a few hundred bytes
 * that the agent can embed and import on devices that cannot reach any registry. That means we
 * make raw system calls ourselves, for x86_64 and aarch64.
 */

typedef unsigned long ulong;

#define SIGINT 2
#define SIGTERM 15
#define SIGCHLD 17

#define SA_NOCLDSTOP 0x00000001UL
#define SA_RESTORER 0x04000000UL
#define SA_RESTART 0x10000000UL

#define WNOHANG 1

#if defined(__x86_64__)

#define NR_rt_sigaction 13
#define NR_pause 34
#define NR_wait4 61
#define NR_exit_group 231

static long sys4(long n, long a, long b, long c, long d) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}

/*
 * On x86_64 the kernel returns from a signal handler through a user-supplied restorer that must
 * call rt_sigreturn (libc normally provides it). Without SA_RESTORER and this trampoline, any
 * handler that returns (our SIGCHLD one) would jump to address 0 and crash.
 */
void flt_restore_rt(void);
__asm__(".text\n"
        ".globl flt_restore_rt\n"
        ".type flt_restore_rt,@function\n"
        "flt_restore_rt:\n"
        "  mov $15, %eax\n" /* rt_sigreturn */
        "  syscall\n"
        "  hlt\n");

/* The kernel enters _start with no return address on the stack; realign before calling C. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start,@function\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  and $-16, %rsp\n"
        "  call flt_main\n"
        "  hlt\n");

#define RESTORER_FLAGS SA_RESTORER
#define RESTORER_FN flt_restore_rt

static void wait_for_signal(void) { sys4(NR_pause, 0, 0, 0, 0); }

#elif defined(__aarch64__)

#define NR_wait4 260
#define NR_rt_sigaction 134
#define NR_ppoll 73
#define NR_exit_group 94

static long sys4(long n, long a, long b, long c, long d) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
  return x0;
}

__asm__(".text\n"
        ".globl _start\n"
        ".type _start,@function\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  bl flt_main\n"
        "  brk #0\n");

/* arm64 has a signal-return trampoline in the vDSO, so no restorer of our own is needed. */
#define RESTORER_FLAGS 0UL
#define RESTORER_FN 0

/* arm64 has no pause(2); ppoll on no descriptors with no timeout blocks until a signal. */
static void wait_for_signal(void) { sys4(NR_ppoll, 0, 0, 0, 0); }

#else
#error "pause.c supports x86_64 and aarch64 only"
#endif

/* The kernel's struct sigaction (not libc's): handler, flags, restorer, then a 64-bit mask. */
struct kernel_sigaction {
  void (*handler)(int);
  ulong flags;
  void (*restorer)(void);
  ulong mask;
};

static void __attribute__((noreturn)) exit_group(int code) {
  for (;;) sys4(NR_exit_group, code, 0, 0, 0);
}

static void on_terminate(int sig) {
  (void)sig;
  exit_group(0);
}

static void on_child(int sig) {
  (void)sig;
  /* One SIGCHLD may stand for several exits, so reap until nothing is left. */
  while (sys4(NR_wait4, -1, 0, WNOHANG, 0) > 0) {
  }
}

static void install(int sig, void (*handler)(int), ulong extra_flags) {
  struct kernel_sigaction sa;
  sa.handler = handler;
  sa.flags = RESTORER_FLAGS | SA_RESTART | extra_flags;
  sa.restorer = RESTORER_FN;
  sa.mask = 0;
  if (sys4(NR_rt_sigaction, sig, (long)&sa, 0, sizeof sa.mask) < 0) exit_group(2);
}

void __attribute__((noreturn, used)) flt_main(void) {
  install(SIGTERM, on_terminate, 0);
  install(SIGINT, on_terminate, 0);
  install(SIGCHLD, on_child, SA_NOCLDSTOP);
  for (;;) wait_for_signal();
}
