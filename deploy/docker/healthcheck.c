/* healthcheck: the container HEALTHCHECK probe of Vigie's images (the runtime image has no shell and no curl).
 *
 *   healthcheck [PATH]     GET http://127.0.0.1:$ADMIN_PORT/PATH (default /readyz); exit 0 on a 200, 1 otherwise
 *
 * Why a separate program: the service binaries have no probe mode yet (that belongs in services/kit, a later
 * change); this is the smallest honest probe: one request with a 2 s deadline, no redirects, nothing else.
 * Built in the image's build stage (deploy/docker/Dockerfile); plain C and libc only. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/readyz";
    const char *port_text = getenv("ADMIN_PORT");
    char *end = NULL;
    long port = port_text ? strtol(port_text, &end, 10) : 0;
    if (!port_text || *end != '\0' || port <= 0 || port > 65535 || path[0] != '/' || strlen(path) > 200) {
        fprintf(stderr, "healthcheck: ADMIN_PORT must be a port and PATH must start with /\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("healthcheck: socket");
        return 1;
    }
    struct timeval deadline = {.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &deadline, sizeof deadline);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("healthcheck: connect");
        return 1;
    }
    char request[320];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
    if (write(fd, request, (size_t)n) != n) {
        perror("healthcheck: write");
        return 1;
    }
    char status[16] = {0};
    size_t got = 0;
    while (got < 12) {
        ssize_t r = read(fd, status + got, 12 - got);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (got == 12 && strncmp(status, "HTTP/1.", 7) == 0 && strncmp(status + 9, "200", 3) == 0) {
        return 0;
    }
    fprintf(stderr, "healthcheck: %s answered '%.12s', not 200\n", path, status);
    return 1;
}
