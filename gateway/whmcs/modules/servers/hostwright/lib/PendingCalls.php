<?php

namespace WHMCS\Module\Server\Hostwright;

use WHMCS\Database\Capsule;

/**
 * The Idempotency-Key of each lifecycle call, kept in WHMCS's database until hostwright has
 * answered it.
 *
 * A call is "the same call" when it has the same WHMCS service id, action and arguments that
 * matter (the plan, a hash of the new password, …); the table matches them by `args_hash`, an
 * HMAC keyed with the server's access hash, so it holds no plain hash of a password that could
 * be checked offline. The key itself is the service id, the action and a random part — no
 * part of any argument's hash, since hostwright logs and keeps it as the command id. It stays
 * in `mod_hostwright_pending_calls` while no answer came (a timeout, a
 * gateway that was down, a 5xx): WHMCS retrying that call sends the same key, so hostwright
 * records one command. Once hostwright has answered (recorded, or refused and recorded
 * nothing) the key is settled, so the next call of that kind — a second suspend a month after
 * an unsuspend, another redeploy — gets a new key and is recorded as the new command it is.
 * A key left pending longer than a day is not reused: by then a call is a new one.
 */
class PendingCalls
{
    const TABLE = 'mod_hostwright_pending_calls';
    const KEEP_S = 86400;

    /** @var string the server's access hash: the HMAC key of args_hash */
    private $hashKey;

    public function __construct(string $hashKey)
    {
        $this->hashKey = $hashKey;
    }

    /** The key for this call: the pending one of the same call, else a new one. */
    public function keyFor(string $serviceId, string $action, array $args): string
    {
        if ($this->hashKey === '') { // an unkeyed hash of a password's hash must not be stored
            throw new GatewayError(
                "no credential: put hostwright's WHMCS credential (HOSTWRIGHT_API_TOKEN) in the server's Access Hash"
            );
        }
        $this->ensureTable();
        // keys left longer than a day are no call's any more (nor are rows of older versions of
        // this module, whose args_hash was not keyed)
        Capsule::table(self::TABLE)->where('created_at', '<', date('Y-m-d H:i:s', time() - self::KEEP_S))->delete();
        $argsHash = hash_hmac('sha256', (string) json_encode($args, JSON_UNESCAPED_SLASHES), $this->hashKey);
        $row = Capsule::table(self::TABLE)
            ->where('service_id', $serviceId)
            ->where('action', $action)
            ->where('args_hash', $argsHash)
            ->first();
        if ($row !== null) {
            if (time() - strtotime((string) $row->created_at) < self::KEEP_S) {
                return (string) $row->idempotency_key;
            }
            $this->settle((string) $row->idempotency_key);
        }
        $key = self::newKey($serviceId, $action);
        Capsule::table(self::TABLE)->insert([
            'service_id' => $serviceId,
            'action' => $action,
            'args_hash' => $argsHash,
            'idempotency_key' => $key,
            'created_at' => date('Y-m-d H:i:s'),
        ]);
        return $key;
    }

    /** hostwright answered the call with this key: the next such call is a new one. */
    public function settle(string $key): void
    {
        $this->ensureTable();
        Capsule::table(self::TABLE)->where('idempotency_key', $key)->delete();
    }

    /**
     * hostwright's command id form: 1-64 of A-Z a-z 0-9 _ -. The service id and action keep
     * it readable in hostwright's logs; 16 random hex digits make it unique. Nothing of the
     * arguments is in it: hostwright logs and keeps the key.
     */
    private static function newKey(string $serviceId, string $action): string
    {
        $service = preg_replace('/[^A-Za-z0-9_-]/', '', $serviceId);
        $key = 'whmcs-' . substr($service, 0, 20) . '-' . $action . '-' . bin2hex(random_bytes(8));
        return substr($key, 0, 64);
    }

    private function ensureTable(): void
    {
        $schema = Capsule::schema();
        if ($schema->hasTable(self::TABLE)) {
            return;
        }
        $schema->create(self::TABLE, function ($table) {
            $table->increments('id');
            $table->string('service_id', 64);
            $table->string('action', 32);
            $table->string('args_hash', 64);
            $table->string('idempotency_key', 64)->unique();
            $table->dateTime('created_at');
            $table->index(['service_id', 'action', 'args_hash']);
        });
    }
}
