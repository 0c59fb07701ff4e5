<?php

namespace WHMCS\Module\Server\Hostwright;

/**
 * hostwright's gateway over HTTP (curl), as the WHMCS credential.
 *
 * Built from WHMCS's server parameters: hostname (or IP), port, "Secure" for https, and the
 * Access Hash holding hostwright's WHMCS credential (HOSTWRIGHT_API_TOKEN). Short timeouts,
 * so a gateway that hangs holds a WHMCS page or cron run for seconds, not minutes. Every call
 * goes to WHMCS's module log through logModuleCall with the credential and every password
 * scrubbed; every failure is a GatewayError whose message is readable as it is.
 */
class ApiClient
{
    const MODULE = 'hostwright';
    const CONNECT_TIMEOUT_S = 3;
    const TIMEOUT_S = 10;
    const MASK = '********';

    /** @var string */
    private $baseUrl;
    /** @var string */
    private $token;
    /** @var int */
    private $connectTimeout;
    /** @var int */
    private $timeout;
    /** @var string[] passwords of the call under way, scrubbed from the log */
    private $secrets = [];

    public function __construct(
        string $baseUrl,
        string $token,
        int $connectTimeout = self::CONNECT_TIMEOUT_S,
        int $timeout = self::TIMEOUT_S
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->token = $token;
        $this->connectTimeout = $connectTimeout;
        $this->timeout = $timeout;
    }

    /** The client of the server WHMCS passes in a module call's parameters. */
    public static function fromParams(array $params): self
    {
        return new self(self::baseUrlOf($params), self::tokenOf($params));
    }

    /**
     * scheme://host:port of the server entry: hostname, else its IP; https when "Secure", or
     * when the hostname was typed as an https:// URL (its scheme and port win).
     */
    public static function baseUrlOf(array $params): string
    {
        $host = trim((string) ($params['serverhostname'] ?? ''));
        if ($host === '') {
            $host = trim((string) ($params['serverip'] ?? ''));
        }
        if ($host === '') {
            throw new GatewayError('the hostwright server has no hostname or IP address: set one on the server entry');
        }
        $secure = self::isSecure($params['serversecure'] ?? false);
        if (preg_match('#^(https?)://#i', $host, $scheme)) { // a URL typed into the hostname field
            $secure = strtolower($scheme[1]) === 'https'; // its scheme says whether TLS is on
            $urlPort = parse_url($host, PHP_URL_PORT); // and its port, when it names one
            $host = (string) parse_url($host, PHP_URL_HOST);
        }
        if (strpos($host, ':') !== false && $host[0] !== '[') {
            $host = '[' . $host . ']'; // an IPv6 address
        }
        $port = isset($urlPort) ? (int) $urlPort : (int) ($params['serverport'] ?? 0);
        if ($port <= 0 || $port > 65535) {
            $port = $secure ? 443 : 8080;
        }
        return ($secure ? 'https' : 'http') . '://' . $host . ':' . $port;
    }

    public function baseUrl(): string
    {
        return $this->baseUrl;
    }

    public function get(string $path, array $query = [], string $action = 'GET'): array
    {
        if ($query) {
            $path .= '?' . http_build_query($query);
        }
        return $this->request('GET', $path, null, null, $action);
    }

    /**
     * POSTs $body (an object) with $idempotencyKey; $secrets are the passwords in it, which
     * never reach the module log.
     */
    public function post(
        string $path,
        array $body,
        ?string $idempotencyKey,
        string $action,
        array $secrets = []
    ): array {
        return $this->request('POST', $path, $body, $idempotencyKey, $action, $secrets);
    }

    private function request(
        string $method,
        string $path,
        ?array $body,
        ?string $idempotencyKey,
        string $action,
        array $secrets = []
    ): array {
        $this->secrets = array_values(array_filter($secrets, 'strlen'));
        if ($this->token === '') {
            throw new GatewayError(
                "no credential: put hostwright's WHMCS credential (HOSTWRIGHT_API_TOKEN) in the server's Access Hash"
            );
        }
        $url = $this->baseUrl . $path;
        $headers = ['Accept: application/json', 'Authorization: Bearer ' . $this->token];
        $payload = null;
        if ($body !== null) {
            $payload = json_encode((object) $body, JSON_UNESCAPED_SLASHES);
            if ($payload === false) { // text that is not UTF-8, typed into WHMCS
                throw new GatewayError('the call to hostwright cannot be sent: a value in it is not UTF-8 text (' . json_last_error_msg() . ')');
            }
            $headers[] = 'Content-Type: application/json';
        }
        if ($idempotencyKey !== null) {
            $headers[] = 'Idempotency-Key: ' . $idempotencyKey;
        }
        $curl = curl_init($url);
        curl_setopt_array($curl, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_CONNECTTIMEOUT => $this->connectTimeout,
            CURLOPT_TIMEOUT => $this->timeout,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_SSL_VERIFYPEER => true,
            CURLOPT_SSL_VERIFYHOST => 2,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
        ]);
        if ($payload !== null) {
            curl_setopt($curl, CURLOPT_POSTFIELDS, $payload);
        }
        $raw = curl_exec($curl);
        $errno = curl_errno($curl);
        $curlError = curl_error($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        curl_close($curl);

        $logged = ['method' => $method, 'url' => $url, 'body' => $this->scrubbed($body)];
        if ($idempotencyKey !== null) {
            $logged['idempotency_key'] = $idempotencyKey;
        }
        if ($errno !== 0 || !is_string($raw)) {
            $message = $this->transportFailure($errno, $curlError);
            $this->log($action, $logged, $message, null);
            throw new GatewayError($message);
        }
        $decoded = json_decode($raw, true);
        $this->log($action, $logged, $this->scrubText($raw), $decoded);
        if (!is_array($decoded)) {
            throw new GatewayError(
                "hostwright at {$this->baseUrl} answered HTTP {$status} with a body that is not JSON: is this hostwright's gateway?",
                $status
            );
        }
        if ($status >= 200 && $status < 300) {
            return $decoded;
        }
        throw new GatewayError($this->refusal($status, $decoded), $status);
    }

    private function transportFailure(int $errno, string $curlError): string
    {
        if ($errno === CURLE_OPERATION_TIMEDOUT) {
            return "hostwright at {$this->baseUrl} did not answer within {$this->timeout} s: try again later";
        }
        if (in_array($errno, self::tlsFailures(), true)) {
            return "hostwright at {$this->baseUrl}: the TLS connection failed ({$curlError}); check the server's hostname, port and certificate";
        }
        return "hostwright at {$this->baseUrl} cannot be reached ({$curlError}): check the server's hostname and port, and that hostwright runs";
    }

    private function refusal(int $status, array $decoded): string
    {
        $said = is_string($decoded['error'] ?? null) ? $this->scrubText($decoded['error']) : "HTTP {$status}";
        switch (true) {
            case $status === 401:
                return "hostwright refused the credential ({$said}): check the server's Access Hash, hostwright's WHMCS credential (HOSTWRIGHT_API_TOKEN)";
            case $status === 403:
                return "hostwright does not let this credential do that ({$said}): give the server's Access Hash the WHMCS credential";
            case $status === 404:
                return "hostwright: {$said}";
            case $status === 409:
                return "hostwright refused it: {$said}";
            case $status === 422:
                return "hostwright refused the values: {$said}";
            case $status >= 500:
                return "hostwright failed to answer (HTTP {$status}: {$said}): try again later";
            default:
                return "hostwright refused the request (HTTP {$status}): {$said}";
        }
    }

    private function log(string $action, array $request, $response, $processed): void
    {
        if (!function_exists('logModuleCall')) {
            return;
        }
        if (is_array($processed)) {
            $processed = $this->scrubbed($processed);
        }
        logModuleCall(self::MODULE, $action, $request, $response, $processed, array_merge([$this->token], $this->secrets));
    }

    /** $body with every password field and every secret of the call masked. */
    private function scrubbed($body)
    {
        if (!is_array($body)) {
            return $body;
        }
        $clean = [];
        foreach ($body as $name => $value) {
            if (is_string($name) && stripos($name, 'password') !== false) {
                $clean[$name] = self::MASK;
            } elseif (is_array($value)) {
                $clean[$name] = $this->scrubbed($value);
            } elseif (is_string($value)) {
                $clean[$name] = $this->scrubText($value);
            } else {
                $clean[$name] = $value;
            }
        }
        return $clean;
    }

    /** $text without the credential, the call's passwords, or a client link's token. */
    private function scrubText(string $text): string
    {
        foreach (array_merge([$this->token], $this->secrets) as $secret) {
            if ($secret !== '') {
                $text = str_replace($secret, self::MASK, $text);
            }
        }
        return (string) preg_replace('/([?&]token=)[^&"\s]+/', '$1' . self::MASK, $text);
    }

    /** curl's TLS failures, those this PHP's curl names (the names differ between versions). */
    private static function tlsFailures(): array
    {
        $names = ['CURLE_SSL_CONNECT_ERROR', 'CURLE_PEER_FAILED_VERIFICATION', 'CURLE_SSL_PEER_CERTIFICATE', 'CURLE_SSL_CACERT', 'CURLE_SSL_CERTPROBLEM'];
        $codes = [];
        foreach ($names as $name) {
            if (defined($name)) {
                $codes[] = constant($name);
            }
        }
        return $codes;
    }

    /** The credential of the server entry: its Access Hash, else its password. */
    public static function tokenOf(array $params): string
    {
        $hash = trim((string) ($params['serveraccesshash'] ?? ''));
        return $hash !== '' ? $hash : trim((string) ($params['serverpassword'] ?? ''));
    }

    private static function isSecure($flag): bool
    {
        return $flag === true || $flag === 1 || in_array(strtolower((string) $flag), ['1', 'on', 'true', 'yes'], true);
    }
}
