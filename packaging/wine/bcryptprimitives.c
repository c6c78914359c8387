/*
 * A stand-in for Windows' bcryptprimitives.dll, for running Go's Windows
 * test binaries under Wine 8 (Debian 12), which lacks ProcessPrng. Go
 * 1.22+ draws all its randomness from ProcessPrng; without it a Windows
 * binary dies at start under Wine. Here it is RtlGenRandom
 * (advapi32!SystemFunction036), which Wine implements from the host's
 * random source. CI only: nothing of this ships.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *        bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
